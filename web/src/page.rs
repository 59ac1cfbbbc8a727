//! The page: finds the browser's WebGPU adapter, fetches the bundled MNIST files, trains,
//! and draws the loss and accuracy chart and a few test digits with their predictions as
//! it goes. `run` resolves to a summary object the browser test reads.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CanvasRenderingContext2d, Document, HtmlCanvasElement, Response};
use wgrad_nn::Mnist;

use crate::{test_images, train, Event, Model, Options, SHOWN};

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn document() -> Result<Document, JsValue> {
    web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| js_err("no document"))
}

fn set_text(id: &str, text: &str) {
    if let Some(el) = document().ok().and_then(|d| d.get_element_by_id(id)) {
        el.set_text_content(Some(text));
    }
}

fn canvas(id: &str) -> Result<CanvasRenderingContext2d, JsValue> {
    let el = document()?
        .get_element_by_id(id)
        .ok_or_else(|| js_err(format!("no element #{id}")))?;
    let canvas: HtmlCanvasElement = el.dyn_into()?;
    canvas
        .get_context("2d")?
        .ok_or_else(|| js_err("no 2d context"))?
        .dyn_into()
        .map_err(JsValue::from)
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, JsValue> {
    let window = web_sys::window().ok_or_else(|| js_err("no window"))?;
    let response: Response = JsFuture::from(window.fetch_with_str(url))
        .await?
        .dyn_into()?;
    if !response.ok() {
        return Err(js_err(format!("{url}: HTTP {}", response.status())));
    }
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// What the chart shows: (step, loss) and (step, accuracy) points.
#[derive(Default)]
struct Chart {
    losses: Vec<(usize, f32)>,
    accuracy: Vec<(usize, f64)>,
    steps: usize,
}

impl Chart {
    fn draw(&self, ctx: &CanvasRenderingContext2d) {
        let canvas = ctx.canvas().expect("a 2d context has its canvas");
        let (w, h) = (f64::from(canvas.width()), f64::from(canvas.height()));
        let (left, bottom, top) = (40.0, h - 24.0, 12.0);
        ctx.set_fill_style_str("#ffffff");
        ctx.fill_rect(0.0, 0.0, w, h);
        ctx.set_stroke_style_str("#888888");
        ctx.stroke_rect(left, top, w - left - 10.0, bottom - top);
        ctx.set_fill_style_str("#333333");
        ctx.set_font("12px sans-serif");
        let _ = ctx.fill_text("loss", 4.0, top + 10.0);
        let _ = ctx.fill_text("0", 26.0, bottom);
        let _ = ctx.fill_text(&format!("step {}", self.steps), w - 80.0, h - 6.0);
        let steps = self.steps.max(1) as f64;
        let x = |s: usize| left + (w - left - 10.0) * s as f64 / steps;
        let max_loss = self.losses.iter().map(|l| l.1).fold(0.1f32, f32::max) as f64;
        ctx.set_stroke_style_str("#1f77b4");
        ctx.begin_path();
        for (i, &(s, l)) in self.losses.iter().enumerate() {
            let y = bottom - (bottom - top) * f64::from(l) / max_loss;
            if i == 0 {
                ctx.move_to(x(s), y);
            } else {
                ctx.line_to(x(s), y);
            }
        }
        ctx.stroke();
        ctx.set_fill_style_str("#d62728");
        for &(s, a) in &self.accuracy {
            let y = bottom - (bottom - top) * a;
            ctx.fill_rect(x(s) - 3.0, y - 3.0, 6.0, 6.0);
            let _ = ctx.fill_text(&format!("{:.1}%", a * 100.0), x(s) - 48.0, y + 14.0);
        }
    }
}

/// Draws test digits with the predicted class under each.
fn draw_digits(ctx: &CanvasRenderingContext2d, images: &[&[f32]], predictions: &[u32]) {
    let zoom = 3.0;
    ctx.set_fill_style_str("#ffffff");
    ctx.fill_rect(0.0, 0.0, 8.0 * 96.0, 110.0);
    for (i, img) in images.iter().enumerate() {
        let x0 = i as f64 * 96.0 + 6.0;
        for (p, &v) in img.iter().enumerate() {
            let shade = (255.0 * (1.0 - v)).round() as u8;
            ctx.set_fill_style_str(&format!("rgb({shade},{shade},{shade})"));
            ctx.fill_rect(
                x0 + (p % 28) as f64 * zoom,
                4.0 + (p / 28) as f64 * zoom,
                zoom,
                zoom,
            );
        }
        if let Some(p) = predictions.get(i) {
            ctx.set_fill_style_str("#000000");
            ctx.set_font("16px sans-serif");
            let _ = ctx.fill_text(&format!("→ {p}"), x0 + 28.0, 104.0);
        }
    }
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Trains `model` ("mlp" or "cnn") for `epochs` epochs from `seed`, drawing as it goes, and
/// resolves to `{adapter, losses, accuracy, secondsPerEpoch, steps}` (losses: the first 20
/// steps').
#[wasm_bindgen]
pub async fn run(model: String, seed: u32, epochs: u32) -> Result<JsValue, JsValue> {
    // A panic would otherwise end the module with only "unreachable": show its message and
    // hand it to the page as the run's error.
    std::panic::set_hook(Box::new(|info| {
        let message = format!("panic: {info}");
        web_sys::console::error_1(&message.clone().into());
        if let Some(w) = web_sys::window() {
            let _ = Reflect::set(&w, &"wgradError".into(), &message.into());
        }
    }));
    set_text("status", "looking for a WebGPU adapter…");
    let dev = wgrad_device::GpuBackend::device_async()
        .await
        .map_err(js_err)?;
    let adapter = dev.name();
    set_text("backend", &adapter);
    set_text("status", "fetching the MNIST files…");
    let mut files = Vec::new();
    for name in FILES {
        files.push((name, fetch_bytes(&format!("../data/mnist/{name}")).await?));
    }
    let files: [(&str, Vec<u8>); 4] = files.try_into().map_err(|_| js_err("four files"))?;
    let data = Mnist::from_bytes(files).map_err(js_err)?;
    let options = Options {
        model: if model == "cnn" {
            Model::Cnn
        } else {
            Model::Mlp
        },
        seed: u64::from(seed),
        epochs: epochs.max(1) as usize,
        ..Options::default()
    };
    let per_epoch = data.train.labels.len().div_ceil(options.batch);
    let chart = Rc::new(RefCell::new(Chart {
        steps: per_epoch * options.epochs,
        ..Chart::default()
    }));
    let chart_ctx = canvas("chart")?;
    let digits_ctx = canvas("digits")?;
    let shown = test_images(&data, SHOWN);
    draw_digits(&digits_ctx, &shown, &[]);
    let (mut first, mut accuracy, mut last_step) = (Vec::new(), 0.0, 0);
    let started = now_ms();
    set_text(
        "status",
        &format!(
            "training the {} on {} images…",
            model.to_uppercase(),
            data.train.labels.len()
        ),
    );
    let mut on_event = |e: Event| match e {
        Event::Step { step, loss } => {
            if step <= options.exact_steps {
                first.push(loss);
            }
            last_step = step;
            chart.borrow_mut().losses.push((step, loss));
            chart.borrow().draw(&chart_ctx);
            set_text("loss", &format!("step {step}: loss {loss:.4}"));
        }
        Event::Epoch {
            epoch,
            accuracy: a,
            predictions,
        } => {
            accuracy = a;
            chart.borrow_mut().accuracy.push((epoch * per_epoch, a));
            chart.borrow().draw(&chart_ctx);
            draw_digits(&digits_ctx, &shown, &predictions);
            set_text(
                "accuracy",
                &format!("epoch {epoch}: test accuracy {:.2}%", a * 100.0),
            );
        }
    };
    train(&dev, &data, &options, &mut on_event)
        .await
        .map_err(js_err)?;
    let seconds = (now_ms() - started) / 1000.0 / options.epochs as f64;
    set_text("status", &format!("done: {seconds:.1} s per epoch"));

    let result = Object::new();
    let losses = Array::new();
    for l in &first {
        losses.push(&JsValue::from_f64(f64::from(*l)));
    }
    Reflect::set(&result, &"adapter".into(), &adapter.into())?;
    Reflect::set(&result, &"losses".into(), &losses)?;
    Reflect::set(&result, &"accuracy".into(), &accuracy.into())?;
    Reflect::set(&result, &"secondsPerEpoch".into(), &seconds.into())?;
    Reflect::set(&result, &"steps".into(), &(last_step as f64).into())?;
    Ok(result.into())
}
