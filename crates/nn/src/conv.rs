//! Convolution and pooling layers.

use wgrad_graph::{Conv2dSpec, DType, Device, Op, Pool2dSpec, Result, Tensor};

use crate::init::Init;
use crate::module::Module;
use crate::rng::Rng;

/// Options of [`Conv2d`] and [`ConvTranspose2d`], with PyTorch's defaults (stride 1, no padding,
/// dilation 1, one group, a bias) and Glorot-uniform weights.
#[derive(Clone, Copy, Debug)]
pub struct ConvConfig {
    /// Step between windows, `[height, width]`.
    pub stride: [usize; 2],
    /// Zero padding on each side, `[height, width]`.
    pub padding: [usize; 2],
    /// Spacing between kernel taps, `[height, width]`.
    pub dilation: [usize; 2],
    /// Number of channel groups; `in` and `out` must both divide by it (`groups == in` is depthwise).
    pub groups: usize,
    /// Whether the layer adds a learnable bias per output channel.
    pub bias: bool,
    /// How the weights are drawn.
    pub init: Init,
    /// Extra rows/columns at the bottom/right of a transposed convolution's output.
    pub output_padding: [usize; 2],
}

impl Default for ConvConfig {
    fn default() -> Self {
        ConvConfig {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: true,
            init: Init::GlorotUniform,
            output_padding: [0, 0],
        }
    }
}

impl ConvConfig {
    fn spec(&self) -> Conv2dSpec {
        Conv2dSpec {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
        }
    }
}

/// The shape an op gives for f32 inputs of these shapes: the graph's own rule.
fn infer(op: Op, inputs: &[&[usize]]) -> std::result::Result<Vec<usize>, String> {
    let metas: Vec<_> = inputs.iter().map(|s| (s.to_vec(), DType::F32)).collect();
    op.infer(&metas).map(|(shape, _)| shape)
}

/// Checks the channel grouping and draws a layer's weights (of `shape`) and zero bias.
/// Fans follow the convolution's direction: `in/groups · taps` in, `out/groups · taps` out.
#[track_caller]
fn weights(
    layer: &str,
    device: &Device,
    [inputs, outputs]: [usize; 2],
    shape: &[usize; 4],
    rng: &mut Rng,
    config: &ConvConfig,
) -> Result<(Tensor, Option<Tensor>)> {
    let g = config.groups;
    assert!(
        g > 0 && inputs.is_multiple_of(g) && outputs.is_multiple_of(g),
        "{layer}: {inputs} input and {outputs} output channels must both divide into {g} groups"
    );
    let taps = shape[2] * shape[3];
    let n: usize = shape.iter().product();
    let w = config
        .init
        .sample(rng, inputs / g * taps, outputs / g * taps, n);
    Ok((
        Tensor::param(device, &w, shape)?,
        bias_param(device, outputs, config.bias)?,
    ))
}

fn bias_param(device: &Device, n: usize, on: bool) -> Result<Option<Tensor>> {
    on.then(|| Tensor::param(device, &vec![0.0; n], &[n]))
        .transpose()
}

fn add_bias(y: Tensor, bias: &Option<Tensor>) -> Tensor {
    match bias {
        Some(b) => y + b.reshape(&[1, b.numel(), 1, 1]),
        None => y,
    }
}

#[track_caller]
fn check_input(layer: &str, x: &Tensor, channels: usize) {
    assert!(
        x.rank() == 4 && x.shape()[1] == channels,
        "{layer}: expects input [batch, {channels}, height, width], got {:?}",
        x.shape()
    );
}

/// 2-D convolution over `[n, in, h, w]` with weights `[out, in/groups, kh, kw]` and a bias.
pub struct Conv2d {
    /// Weights `[out, in/groups, kh, kw]`.
    pub weight: Tensor,
    /// Bias `[out]`, if enabled.
    pub bias: Option<Tensor>,
    spec: Conv2dSpec,
    channels: [usize; 2],
    kernel: [usize; 2],
}

impl Conv2d {
    /// A layer from `inputs` to `outputs` channels with a `kernel` of `[kh, kw]` taps.
    #[track_caller]
    pub fn new(
        device: &Device,
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        rng: &mut Rng,
        config: ConvConfig,
    ) -> Result<Conv2d> {
        let g = config.groups;
        let shape = [outputs, inputs / g.max(1), kernel[0], kernel[1]];
        let (weight, bias) = weights("Conv2d", device, [inputs, outputs], &shape, rng, &config)?;
        Ok(Conv2d {
            weight,
            bias,
            spec: config.spec(),
            channels: [inputs, outputs],
            kernel,
        })
    }
}

impl Module for Conv2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        check_input(&self.describe(), x, self.channels[0]);
        add_bias(x.conv2d(&self.weight, self.spec), &self.bias)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        p.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
        p
    }

    fn describe(&self) -> String {
        format!(
            "Conv2d({} -> {}, {}x{})",
            self.channels[0], self.channels[1], self.kernel[0], self.kernel[1]
        )
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        if input.len() != 4 || input[1] != self.channels[0] {
            return Err(format!(
                "expects input [batch, {}, height, width], got {input:?}",
                self.channels[0]
            ));
        }
        infer(Op::Conv2d(self.spec), &[input, self.weight.shape()])
    }
}

/// Transposed 2-D convolution with PyTorch's weight layout `[in, out/groups, kh, kw]`.
pub struct ConvTranspose2d {
    /// Weights `[in, out/groups, kh, kw]` (PyTorch's layout).
    pub weight: Tensor,
    /// Bias `[out]`, if enabled.
    pub bias: Option<Tensor>,
    spec: Conv2dSpec,
    output_padding: [usize; 2],
    channels: [usize; 2],
    kernel: [usize; 2],
}

impl ConvTranspose2d {
    /// A layer from `inputs` to `outputs` channels with a `kernel` of `[kh, kw]` taps.
    #[track_caller]
    pub fn new(
        device: &Device,
        inputs: usize,
        outputs: usize,
        kernel: [usize; 2],
        rng: &mut Rng,
        config: ConvConfig,
    ) -> Result<ConvTranspose2d> {
        assert!(
            config.output_padding[0] < config.stride[0]
                && config.output_padding[1] < config.stride[1],
            "ConvTranspose2d: output_padding {:?} must be smaller than the stride {:?}",
            config.output_padding,
            config.stride
        );
        let g = config.groups;
        let shape = [inputs, outputs / g.max(1), kernel[0], kernel[1]];
        let (weight, bias) = weights(
            "ConvTranspose2d",
            device,
            [inputs, outputs],
            &shape,
            rng,
            &config,
        )?;
        Ok(ConvTranspose2d {
            weight,
            bias,
            spec: config.spec(),
            output_padding: config.output_padding,
            channels: [inputs, outputs],
            kernel,
        })
    }
}

impl Module for ConvTranspose2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        check_input(&self.describe(), x, self.channels[0]);
        add_bias(
            x.conv_transpose2d(&self.weight, self.spec, self.output_padding),
            &self.bias,
        )
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        p.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
        p
    }

    fn describe(&self) -> String {
        format!(
            "ConvTranspose2d({} -> {}, {}x{})",
            self.channels[0], self.channels[1], self.kernel[0], self.kernel[1]
        )
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        if input.len() != 4 || input[1] != self.channels[0] {
            return Err(format!(
                "expects input [batch, {}, height, width], got {input:?}",
                self.channels[0]
            ));
        }
        let s = self.spec;
        let mut out = vec![input[0], self.channels[1], 0, 0];
        for d in 0..2 {
            let full = (input[2 + d].max(1) - 1) * s.stride[d]
                + s.dilation[d] * (self.kernel[d] - 1)
                + self.output_padding[d]
                + 1;
            out[2 + d] = full
                .checked_sub(2 * s.padding[d])
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    format!(
                        "padding {:?} leaves no output for input {input:?}",
                        s.padding
                    )
                })?;
        }
        Ok(out)
    }
}

/// Max pooling; `MaxPool2d::new(2)` is the usual 2×2 window with stride 2.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d(pub Pool2dSpec);

impl MaxPool2d {
    /// A `k × k` window with stride `k`.
    pub fn new(k: usize) -> Self {
        MaxPool2d(Pool2dSpec::square(k))
    }
}

impl Module for MaxPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(self.0)
    }

    fn describe(&self) -> String {
        format!(
            "MaxPool2d({}x{}, stride {:?})",
            self.0.kernel[0], self.0.kernel[1], self.0.stride
        )
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        infer(Op::MaxPool2d(self.0), &[input])
    }
}

/// Average pooling (counting padding in the divisor by default, like PyTorch).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d(pub Pool2dSpec);

impl AvgPool2d {
    /// A `k × k` window with stride `k`.
    pub fn new(k: usize) -> Self {
        AvgPool2d(Pool2dSpec::square(k))
    }
}

impl Module for AvgPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.avg_pool2d(self.0)
    }

    fn describe(&self) -> String {
        format!(
            "AvgPool2d({}x{}, stride {:?})",
            self.0.kernel[0], self.0.kernel[1], self.0.stride
        )
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        infer(Op::AvgPool2d(self.0), &[input])
    }
}

/// Mean over height and width: `[n, c, h, w] -> [n, c]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalAvgPool2d;

impl Module for GlobalAvgPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        assert_eq!(
            x.rank(),
            4,
            "GlobalAvgPool2d: expects [n, c, h, w], got {:?}",
            x.shape()
        );
        x.mean(&[2, 3], false)
    }

    fn describe(&self) -> String {
        "GlobalAvgPool2d".into()
    }

    fn output_shape(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        match input {
            [n, c, _, _] => Ok(vec![*n, *c]),
            _ => Err(format!(
                "expects [batch, channels, height, width], got {input:?}"
            )),
        }
    }
}
