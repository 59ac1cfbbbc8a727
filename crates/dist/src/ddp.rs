//! `Ddp`: data-parallel training over a [`Communicator`], what the trainer calls at the points
//! where the ranks meet (see `wgrad_nn::DataParallel`).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use wgrad_graph::{no_grad, realize_all, Error, Grads, Result, Tensor};
use wgrad_nn::{DataParallel, Module};

use crate::comm::Communicator;
use crate::sampler::DistributedSampler;

/// PyTorch's default bucket size for gradient all-reduces (`bucket_cap_mb`).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Data-parallel training, as PyTorch's `DistributedDataParallel`: give it to
/// `Trainer::with_data_parallel`, or call its methods from a loop of one's own.
///
/// - At the start, every rank takes rank 0's parameters and buffers.
/// - Each rank trains on its shard of every epoch ([`DistributedSampler`]).
/// - After backward, the gradients are averaged over the ranks, in buckets of several
///   tensors per all-reduce ([`Ddp::with_bucket_bytes`]), so that a step makes a few large
///   calls; the optimizer then runs alike on every rank.
/// - Metrics and validation counts are summed over the ranks; rank 0 prints and writes.
pub struct Ddp {
    comm: Box<dyn Communicator>,
    bucket_bytes: usize,
    drop_last: bool,
    stats: Cell<CommStats>,
    /// The layouts of the parameter lists seen (a GAN's step has two), each with whether
    /// the ranks have been found to agree on it.
    layouts: RefCell<Vec<(Layout, bool)>>,
}

/// What the gradient averaging has cost so far, on this rank.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// Sets of gradients averaged: one per step of a model, two per step of a GAN.
    pub steps: u64,
    /// All-reduce calls made for gradients.
    pub calls: u64,
    /// Bytes of gradients this rank all-reduced (sent, and received back summed).
    pub bytes: u64,
    /// Time spent computing the gradients and reading them to the host.
    pub reading: Duration,
    /// Time spent in the all-reduces, waiting for the other ranks included.
    pub communicating: Duration,
    /// Time spent writing the averages back to the device.
    pub writing: Duration,
}

/// How the trained parameters' gradients are cut into buckets.
#[derive(Clone, Debug, PartialEq)]
struct Layout {
    /// Parameter ids the layout was made for (a new optimizer gets a new layout).
    ids: Vec<u64>,
    /// Per bucket, (index into the parameters, offset in the bucket, length).
    buckets: Vec<Vec<(usize, usize, usize)>>,
}

impl Ddp {
    /// Data-parallel training over `comm`, with PyTorch's defaults: buckets of 25 MiB, the
    /// last round of an epoch padded.
    pub fn new(comm: impl Communicator + 'static) -> Ddp {
        Ddp {
            comm: Box::new(comm),
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            drop_last: false,
            stats: Cell::new(CommStats::default()),
            layouts: RefCell::new(Vec::new()),
        }
    }

    /// The ranks of the MPI job this process was started in (`mpirun`), or a clear error
    /// when this build has no MPI (the `mpi` feature). One process started without
    /// `mpirun` is a job of one rank.
    pub fn from_mpi() -> Result<Ddp> {
        #[cfg(feature = "mpi")]
        {
            Ok(Ddp::new(crate::mpi::Mpi::init()?))
        }
        #[cfg(not(feature = "mpi"))]
        {
            Err(Error::Data(
                "distributed training needs MPI, and wgrad was built without it: build with \
                 `--features mpi` (and install an MPI such as Debian's libopenmpi-dev)"
                    .into(),
            ))
        }
    }

    /// Gradients are all-reduced in buckets of about `bytes` (at least one tensor each).
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(1);
        self
    }

    /// Drops the samples past the last multiple of the world size instead of padding.
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The communicator.
    pub fn communicator(&self) -> &dyn Communicator {
        &*self.comm
    }

    /// This rank's sampler.
    pub fn sampler(&self) -> DistributedSampler {
        DistributedSampler::new(self.comm.rank(), self.comm.size()).drop_last(self.drop_last)
    }

    /// What averaging gradients has cost so far.
    pub fn stats(&self) -> CommStats {
        self.stats.get()
    }

    /// Ends every rank's process after an error on this one (see [`Communicator::abort`]).
    pub fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }

    /// Cuts the trained parameters into buckets of about `bucket_bytes`.
    fn layout(&self, trained: &[(usize, &Tensor)]) -> Layout {
        let limit = self.bucket_bytes.div_ceil(4);
        let mut buckets: Vec<Vec<(usize, usize, usize)>> = Vec::new();
        let mut filled = limit;
        for &(i, p) in trained {
            let n = p.numel();
            if filled + n > limit && filled > 0 {
                buckets.push(Vec::new());
                filled = 0;
            }
            buckets.last_mut().expect("a bucket").push((i, filled, n));
            filled += n;
        }
        Layout {
            ids: trained.iter().map(|(_, p)| p.id()).collect(),
            buckets,
        }
    }

    /// Once per layout: every rank trains the same number of values in the same buckets.
    fn check_layout(&self, layout: &Layout) -> Result<()> {
        let sizes: Vec<f64> = layout
            .buckets
            .iter()
            .map(|b| b.iter().map(|e| e.2).sum::<usize>() as f64)
            .collect();
        let mut mine = vec![sizes.len() as f64];
        mine.extend(&sizes);
        let mut first = mine.clone();
        // Rank 0's layout against this rank's, then every rank's verdict.
        let mut bytes: Vec<u8> = first.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.comm.broadcast_bytes(&mut bytes)?;
        first = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let mut differ = [(first != mine) as u8 as f64];
        self.comm.all_reduce_sum_f64(&mut differ)?;
        if differ[0] != 0.0 {
            return Err(Error::Data(format!(
                "the ranks train different models: rank 0 averages gradients in buckets of \
                 {:?} values, rank {} in buckets of {:?} ({} rank(s) differ from rank 0)",
                &first[1..],
                self.comm.rank(),
                sizes,
                differ[0]
            )));
        }
        Ok(())
    }
}

impl DataParallel for Ddp {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn world_size(&self) -> usize {
        self.comm.size()
    }

    fn shard(&self, order: &[usize]) -> Vec<usize> {
        self.sampler().shard(order)
    }

    fn broadcast_module(&self, model: &dyn Module) -> Result<()> {
        if self.comm.size() == 1 {
            return Ok(());
        }
        let params = model.named_parameters();
        let buffers = model.named_buffers();
        let all: Vec<&Tensor> = params.iter().chain(&buffers).map(|(_, t)| t).collect();
        let mut bytes = Vec::new();
        if self.comm.rank() == 0 {
            realize_all(&all)?;
            for t in &all {
                bytes.extend(t.to_vec()?.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        self.comm.broadcast_bytes(&mut bytes)?;
        if self.comm.rank() == 0 {
            return Ok(());
        }
        let want: usize = all.iter().map(|t| t.numel() * 4).sum();
        if bytes.len() != want {
            return Err(Error::Data(format!(
                "rank 0's model has {} parameter and buffer values, rank {}'s has {}: every \
                 rank must build the same model",
                bytes.len() / 4,
                self.comm.rank(),
                want / 4
            )));
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut at = 0;
        for (name, t) in params.iter().chain(&buffers) {
            let n = t.numel();
            let value = Tensor::from_slice(t.device(), &values[at..at + n], t.shape())?;
            at += n;
            if buffers.iter().any(|(b, _)| b == name) && !model.set_buffer(name, value.clone()) {
                return Err(Error::Data(format!(
                    "the model refused its buffer `{name}`"
                )));
            }
            if params.iter().any(|(p, _)| p == name) {
                t.assign(&value)?;
            }
        }
        Ok(())
    }

    fn average_gradients(
        &self,
        params: &[Tensor],
        grads: &mut Grads,
        also: &[&Tensor],
    ) -> Result<()> {
        let world = self.comm.size();
        if world == 1 {
            // Nothing to average: the step stays one submission.
            return Ok(());
        }
        let trained: Vec<(usize, &Tensor)> = params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.requires_grad())
            .collect();
        let ids: Vec<u64> = trained.iter().map(|(_, p)| p.id()).collect();
        let found = self.layouts.borrow().iter().position(|(l, _)| l.ids == ids);
        let at = found.unwrap_or_else(|| {
            let mut layouts = self.layouts.borrow_mut();
            layouts.push((self.layout(&trained), false));
            layouts.len() - 1
        });
        let (layout, checked) = self.layouts.borrow()[at].clone();
        if !checked {
            self.check_layout(&layout)?;
            self.layouts.borrow_mut()[at].1 = true;
        }
        let mut stats = self.stats.get();
        let started = Instant::now();
        // Per bucket, the flat gradients (zeros where this rank's loss did not reach a
        // parameter), and whether each parameter had one here.
        let mut present = vec![0f32; params.len()];
        let flat: Vec<Tensor> = no_grad(|| {
            layout
                .buckets
                .iter()
                .map(|bucket| {
                    let parts: Vec<Tensor> = bucket
                        .iter()
                        .map(|&(i, _, n)| match grads.get(&params[i]) {
                            Some(g) => {
                                present[i] = 1.0;
                                g.reshape(&[n])
                            }
                            None => Tensor::zeros(params[i].device(), &[n]),
                        })
                        .collect();
                    let refs: Vec<&Tensor> = parts.iter().collect();
                    Tensor::concat(&refs, 0)
                })
                .collect()
        });
        let mut all: Vec<&Tensor> = flat.iter().collect();
        all.extend(also);
        realize_all(&all)?;
        let mut host = Vec::with_capacity(flat.len());
        for t in &flat {
            host.push(t.to_vec()?);
        }
        let read = Instant::now();
        stats.reading += read - started;
        // Which parameters got a gradient anywhere: the last call carries the flags.
        let last = host.len().saturating_sub(1);
        for (b, values) in host.iter_mut().enumerate() {
            if b == last {
                values.extend(&present);
            }
            self.comm.all_reduce_sum(values)?;
            stats.calls += 1;
            stats.bytes += values.len() as u64 * 4;
        }
        if host.is_empty() {
            self.comm.all_reduce_sum(&mut present)?;
        } else {
            let values = &mut host[last];
            present.copy_from_slice(&values[values.len() - params.len()..]);
            values.truncate(values.len() - params.len());
        }
        let reduced = Instant::now();
        stats.communicating += reduced - read;
        let scale = 1.0 / world as f32;
        for (bucket, mut values) in layout.buckets.iter().zip(host) {
            values.iter_mut().for_each(|v| *v *= scale);
            let device = params[bucket[0].0].device();
            let t = Tensor::from_slice(device, &values, &[values.len()])?;
            for &(i, offset, n) in bucket {
                if present[i] == 0.0 {
                    // No rank's loss reached it: it stays without a gradient.
                    continue;
                }
                let g = no_grad(|| t.narrow(0, offset, n).reshape(params[i].shape()));
                grads.set(&params[i], g);
            }
        }
        stats.writing += reduced.elapsed();
        stats.steps += 1;
        self.stats.set(stats);
        Ok(())
    }

    fn sum(&self, values: &mut [f64]) -> Result<()> {
        self.comm.all_reduce_sum_f64(values)?;
        // Rank 0's sums everywhere, bit for bit, so that every rank decides alike (early
        // stopping, schedules) whatever order the transport summed in.
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.comm.broadcast_bytes(&mut bytes)?;
        for (v, b) in values.iter_mut().zip(bytes.chunks_exact(8)) {
            *v = f64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        self.comm.broadcast_bytes(bytes)
    }
}
