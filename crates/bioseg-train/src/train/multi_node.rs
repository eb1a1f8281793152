//! Data parallel across nodes: one `bioseg-train` process per node, gradients summed over the
//! nodes every step with Burn 0.21's `burn-collective` (websocket transport; see
//! `docs/multi_node.md`).
//!
//! Every node builds the same initial weights (same seed), draws its own shard of the global
//! batch (node `r` of `n` takes samples `r·b … r·b + b − 1` of each global batch of `n·b`, from
//! the same deterministic augmentation stream a single process would use), computes its
//! gradients (over its local devices, as [`crate::train::data_parallel`] does) with the loss
//! weighted by its share of the global batch, and all-reduces them (sum) before the optimizer
//! step, so every node applies the identical update — the update of a single process on the
//! concatenated global batch.
//!
//! The topology description ([`MultiNodeConfig`], resolved from flags and Slurm's environment)
//! is always compiled; the collective itself needs the Cargo feature `collective`.

use std::fmt;

use crate::error::TrainError;

/// Default port of the coordinator (burn-collective's global orchestrator).
pub const DEFAULT_COORDINATOR_PORT: u16 = 29400;

/// Where this process sits in a multi-node run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiNodeConfig {
    /// Number of nodes (processes), at least 2.
    pub nodes: usize,
    /// This node's rank, `0..nodes`; rank 0 runs the coordinator.
    pub rank: usize,
    /// Host of the coordinator (reachable from every node).
    pub coordinator_host: String,
    /// Port of the coordinator (the orchestrator listens on all interfaces).
    pub coordinator_port: u16,
    /// Host or address under which the other nodes reach this node.
    pub node_host: String,
    /// Port of this node's tensor data service (peer-to-peer transfers).
    pub data_port: u16,
    /// Seconds to wait for every node to join before giving up with an error.
    pub join_timeout_s: u64,
}

/// Default of [`MultiNodeConfig::join_timeout_s`] (nodes of one Slurm step start within
/// seconds; a missing node should not hold a GPU allocation for hours).
pub const DEFAULT_JOIN_TIMEOUT_S: u64 = 600;

impl fmt::Display for MultiNodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {}/{} (coordinator {}:{}, this node ws://{}:{})",
            self.rank, self.nodes, self.coordinator_host, self.coordinator_port, self.node_host, self.data_port
        )
    }
}

/// Multi-node options as given on the command line (all optional; Slurm's environment fills
/// the gaps).
#[derive(Clone, Debug, Default)]
pub struct MultiNodeArgs {
    /// `--nodes`.
    pub nodes: Option<usize>,
    /// `--node-rank`.
    pub rank: Option<usize>,
    /// `--coordinator HOST[:PORT]`.
    pub coordinator: Option<String>,
    /// `--node-address HOST`.
    pub node_address: Option<String>,
    /// `--data-port`.
    pub data_port: Option<u16>,
    /// `--join-timeout` (seconds; default [`DEFAULT_JOIN_TIMEOUT_S`]).
    pub join_timeout_s: Option<u64>,
}

impl MultiNodeArgs {
    /// Resolves the topology from the flags and the process environment (`SLURM_STEP_NUM_NODES`
    /// or `SLURM_NNODES`, `SLURM_NODEID`, the first host of `SLURM_STEP_NODELIST` or
    /// `SLURM_JOB_NODELIST`, `BIOSEG_COORDINATOR`, `SLURMD_NODENAME`). `None`: one node.
    pub fn resolve(&self) -> Result<Option<MultiNodeConfig>, TrainError> {
        self.resolve_with(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`resolve`](Self::resolve) with an explicit environment.
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<MultiNodeConfig>, TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        let parse_env = |k: &str| -> Result<Option<usize>, TrainError> {
            match env(k) {
                None => Ok(None),
                Some(v) => {
                    v.trim().parse().map(Some).map_err(|_| TrainError::Config(format!("{k}={v} is not a number")))
                }
            }
        };
        let nodes = match self.nodes {
            Some(n) => n,
            None => match parse_env("SLURM_STEP_NUM_NODES")? {
                Some(n) => n,
                None => parse_env("SLURM_NNODES")?.unwrap_or(1),
            },
        };
        if nodes == 0 {
            return bad("--nodes must be at least 1".into());
        }
        if nodes == 1 {
            return Ok(None);
        }
        let rank = match self.rank {
            Some(r) => r,
            None => match parse_env("SLURM_NODEID")? {
                Some(r) => r,
                None => return bad(format!("--nodes {nodes} needs --node-rank (or SLURM_NODEID)")),
            },
        };
        if rank >= nodes {
            return bad(format!("--node-rank {rank} is not below --nodes {nodes}"));
        }
        let coordinator = match &self.coordinator {
            Some(c) => c.clone(),
            None => match env("BIOSEG_COORDINATOR") {
                Some(c) => c,
                None => match env("SLURM_STEP_NODELIST").or_else(|| env("SLURM_JOB_NODELIST")) {
                    Some(list) => first_host(&list)
                        .ok_or_else(|| TrainError::Config(format!("cannot read the first host of `{list}`")))?,
                    None => {
                        return bad(format!(
                            "--nodes {nodes} needs --coordinator HOST:PORT (or BIOSEG_COORDINATOR, or Slurm's node list)"
                        ));
                    }
                },
            },
        };
        let (coordinator_host, coordinator_port) = split_host_port(&coordinator)?;
        let node_host = match &self.node_address {
            Some(h) => h.clone(),
            None => env("SLURMD_NODENAME")
                .or_else(|| env("HOSTNAME"))
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into()),
        };
        // Distinct per rank, so that several nodes may share one machine (tests); each node
        // must be able to open it.
        let data_port = match self.data_port {
            Some(p) => p,
            None => u16::try_from(coordinator_port as usize + 1 + rank)
                .map_err(|_| TrainError::Config("coordinator port too high to derive --data-port".into()))?,
        };
        let join_timeout_s = self.join_timeout_s.unwrap_or(DEFAULT_JOIN_TIMEOUT_S);
        Ok(Some(MultiNodeConfig {
            nodes,
            rank,
            coordinator_host,
            coordinator_port,
            node_host,
            data_port,
            join_timeout_s,
        }))
    }
}

/// `HOST[:PORT]` (an IPv6 address in brackets: `[::1]:PORT`), the port defaulting to
/// [`DEFAULT_COORDINATOR_PORT`].
pub fn split_host_port(s: &str) -> Result<(String, u16), TrainError> {
    let s = s.trim().trim_start_matches("ws://");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (format!("[{h}]"), p.strip_prefix(':')),
            None => return Err(TrainError::Config(format!("bad coordinator address `{s}`"))),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(TrainError::Config(format!("bad coordinator address `{s}`: no host")));
    }
    let port = match port {
        None | Some("") => DEFAULT_COORDINATOR_PORT,
        Some(p) => p.parse().map_err(|_| TrainError::Config(format!("bad coordinator port in `{s}`")))?,
    };
    Ok((host, port))
}

/// The first host of a Slurm node list: `cn[0003-0006,0010],gpu7` → `cn0003`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    let end_plain = list.find([',', '[']).unwrap_or(list.len());
    if list[end_plain..].starts_with('[') {
        let prefix = &list[..end_plain];
        let rest = &list[end_plain + 1..];
        let close = rest.find(']')?;
        let first = rest[..close].split(',').next()?.split('-').next()?.trim();
        let after = &rest[close + 1..];
        let suffix = &after[..after.find(',').unwrap_or(after.len())];
        let host = format!("{prefix}{first}{suffix}");
        (!first.is_empty()).then_some(host)
    } else {
        let host = &list[..end_plain];
        (!host.is_empty()).then(|| host.to_string())
    }
}

#[cfg(feature = "collective")]
pub use collective::{Collective, step};

#[cfg(feature = "collective")]
mod collective {
    use std::time::Duration;

    use burn::collective::{CollectiveConfig, PeerId, ReduceOperation, all_reduce, finish_collective, register};
    use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
    use burn::optim::{GradientsParams, MultiGradientsParams, Optimizer};
    use burn::prelude::*;
    use burn::tensor::TensorPrimitive;
    use burn::tensor::backend::AutodiffBackend;

    use super::MultiNodeConfig;
    use crate::augment::Sample;
    use crate::error::TrainError;
    use crate::model::SegmentationNet;
    use crate::train::losses::Loss;

    type Inner<B> = <B as AutodiffBackend>::InnerBackend;

    /// This process's membership in the multi-node collective (one peer per node).
    pub struct Collective<B: AutodiffBackend> {
        config: MultiNodeConfig,
        device: B::Device,
        peer: PeerId,
        finished: bool,
    }

    fn collective_error(what: &str, e: impl std::fmt::Debug) -> TrainError {
        TrainError::Config(format!("multi-node {what} failed: {e:?}"))
    }

    impl<B: AutodiffBackend> Collective<B> {
        /// Joins the collective (rank 0 first starts the coordinator); returns once every node
        /// has registered.
        pub fn join(config: &MultiNodeConfig, device: &B::Device) -> Result<Self, TrainError> {
            if config.rank == 0 {
                start_coordinator(config.coordinator_port)?;
            }
            let global = format!("ws://{}:{}", config.coordinator_host, config.coordinator_port);
            let node = format!("ws://{}:{}", config.node_host, config.data_port);
            let collective = CollectiveConfig::default()
                .with_num_devices(1)
                .with_num_nodes(config.nodes as u32)
                .with_global_address(global.parse().expect("infallible"))
                .with_node_address(node.parse().expect("infallible"))
                .with_data_service_port(config.data_port);
            let peer = PeerId::from(config.rank);
            let inner_device: B::Device = device.clone();
            tracing::info!("joining the multi-node collective as {config}");
            // Registration returns once every node has joined; a node that never comes must
            // not hold the allocation forever.
            let (tx, rx) = std::sync::mpsc::channel();
            let dev = inner_device.clone();
            std::thread::Builder::new()
                .name("bioseg-join".into())
                .spawn(move || {
                    let _ = tx.send(register::<Inner<B>>(peer, dev, collective));
                })
                .map_err(|e| collective_error("join", e))?;
            match rx.recv_timeout(Duration::from_secs(config.join_timeout_s)) {
                Ok(r) => r.map_err(|e| collective_error("register", e))?,
                Err(_) => {
                    return Err(TrainError::Config(format!(
                        "multi-node: not all {} nodes joined the coordinator {}:{} within {} s (--join-timeout); \
                         is every rank started, and can this node reach the coordinator?",
                        config.nodes, config.coordinator_host, config.coordinator_port, config.join_timeout_s
                    )));
                }
            }
            tracing::info!("all {} nodes registered", config.nodes);
            Ok(Collective { config: config.clone(), device: inner_device, peer, finished: false })
        }

        /// Number of nodes.
        pub fn nodes(&self) -> usize {
            self.config.nodes
        }

        /// This node's rank.
        pub fn rank(&self) -> usize {
            self.config.rank
        }

        /// Sums `values` over the nodes.
        pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>, TrainError> {
            let t = Tensor::<Inner<B>, 1>::from_data(
                TensorData::new(values.iter().map(|&v| v as f32).collect::<Vec<_>>(), [values.len()]),
                &self.device,
            );
            let r = self.all_reduce_flat(t)?;
            Ok(r.into_data().convert::<f32>().to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect())
        }

        /// Sums a flat tensor over the nodes. burn-collective's ring all-reduce cuts the tensor
        /// into one slice per node, so short tensors are padded to the number of nodes.
        fn all_reduce_flat(&self, t: Tensor<Inner<B>, 1>) -> Result<Tensor<Inner<B>, 1>, TrainError> {
            let n = t.dims()[0];
            let t = if n < self.config.nodes {
                Tensor::cat(vec![t, Tensor::zeros([self.config.nodes - n], &self.device)], 0)
            } else {
                t
            };
            let r = all_reduce::<Inner<B>>(self.peer, t.into_primitive().tensor(), ReduceOperation::Sum)
                .map_err(|e| collective_error("all-reduce", e))?;
            Ok(Tensor::<Inner<B>, 1>::from_primitive(TensorPrimitive::Float(r)).narrow(0, 0, n))
        }

        /// Sums the gradients of `model`'s parameters over the local devices (`multi`) and then
        /// over the nodes, together with `extra` values (e.g. the loss), in one all-reduce of
        /// one flat buffer: the parameters' gradients in the module's visiting order
        /// (parameter ids are random per process, so the order cannot come from them), then
        /// `extra`. One round trip per step instead of one per parameter.
        pub fn all_reduce_grads(
            &self,
            model: &impl Module<B>,
            multi: MultiGradientsParams,
            extra: &[f64],
        ) -> Result<(GradientsParams, Vec<f64>), TrainError> {
            let mut gather = Gather::<B> { multi, device: self.device.clone(), parts: Vec::new(), layout: Vec::new() };
            model.visit(&mut gather);
            let mut parts = gather.parts;
            let len: usize = gather.layout.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
            parts.push(Tensor::from_data(
                TensorData::new(extra.iter().map(|&v| v as f32).collect::<Vec<_>>(), [extra.len()]),
                &self.device,
            ));
            let flat = self.all_reduce_flat(Tensor::cat(parts, 0))?;
            let sums: Vec<f64> = flat
                .clone()
                .narrow(0, len, extra.len())
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32")
                .into_iter()
                .map(f64::from)
                .collect();
            let mut scatter = Scatter::<B> {
                flat,
                offset: 0,
                layout: gather.layout.into_iter().peekable(),
                out: GradientsParams::new(),
            };
            model.visit(&mut scatter);
            Ok((scatter.out, sums))
        }

        /// Checks that every node starts from the same weights (same seed, same checkpoint):
        /// the sums of the weights and of their squares must be the same on every node.
        pub fn check_same_weights(&self, model: &impl AutodiffModule<B>) -> Result<(), TrainError> {
            let mut fp = Fingerprint(0.0, 0.0);
            model.valid().visit(&mut fp);
            let local = [fp.0, fp.1];
            let total = self.sum(&[local[0], local[1], 1.0])?;
            let n = total[2];
            for i in 0..2 {
                let mean = total[i] / n;
                if (mean - local[i]).abs() > 1e-3 * (1.0 + local[i].abs()) {
                    return Err(TrainError::Config(format!(
                        "multi-node: node {} starts from other weights than the others (fingerprint {} vs mean {mean}); \
                         give every node the same options, seed and checkpoint",
                        self.config.rank, local[i]
                    )));
                }
            }
            Ok(())
        }

        /// Leaves the collective (after a last barrier, so that no node closes its data
        /// service while another still downloads from it).
        pub fn finish(mut self) -> Result<(), TrainError> {
            self.sum(&[0.0])?;
            self.finished = true;
            finish_collective::<Inner<B>>(self.peer).map_err(|e| collective_error("finish", e))?;
            if self.config.rank == 0 {
                // Let the other nodes close their sessions with the coordinator.
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(())
        }
    }

    impl<B: AutodiffBackend> Drop for Collective<B> {
        fn drop(&mut self) {
            if !self.finished {
                let _ = finish_collective::<Inner<B>>(self.peer);
            }
        }
    }

    /// Takes each parameter's gradient (summed over the local devices) out of `multi`, in the
    /// module's order, flattened.
    struct Gather<B: AutodiffBackend> {
        multi: MultiGradientsParams,
        device: B::Device,
        parts: Vec<Tensor<Inner<B>, 1>>,
        layout: Vec<(ParamId, Vec<usize>)>,
    }

    impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let Some((grad, _)) = self.multi.remove::<Inner<B>, D>(param.id) else {
                return;
            };
            let grad = grad.to_device(&self.device);
            let dims = grad.dims().to_vec();
            let n = dims.iter().product::<usize>();
            self.layout.push((param.id, dims));
            self.parts.push(grad.reshape([n]));
        }
    }

    /// Cuts the all-reduced flat buffer back into the parameters' gradients.
    struct Scatter<B: AutodiffBackend> {
        flat: Tensor<Inner<B>, 1>,
        offset: usize,
        layout: std::iter::Peekable<std::vec::IntoIter<(ParamId, Vec<usize>)>>,
        out: GradientsParams,
    }

    impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.layout.peek().is_none_or(|(id, _)| *id != param.id) {
                return;
            }
            let (id, dims) = self.layout.next().expect("peeked");
            let n = dims.iter().product::<usize>();
            let shape: [usize; D] = dims.try_into().expect("the gradient has the parameter's rank");
            let grad = self.flat.clone().narrow(0, self.offset, n).reshape(shape);
            self.offset += n;
            self.out.register::<Inner<B>, D>(id, grad);
        }
    }

    struct Fingerprint(f64, f64);

    impl<B: Backend> ModuleVisitor<B> for Fingerprint {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let v: Vec<f32> = param.val().into_data().convert::<f32>().to_vec().expect("f32");
            for x in v {
                self.0 += x as f64;
                self.1 += (x as f64) * (x as f64);
            }
        }
    }

    /// Starts burn-collective's global orchestrator on `port` in a background thread with its
    /// own runtime. The orchestrator stops on SIGINT/SIGTERM; the process then exits (130),
    /// as it would without it.
    fn start_coordinator(port: u16) -> Result<(), TrainError> {
        // Fail early and clearly when the port is taken.
        drop(
            std::net::TcpListener::bind(("0.0.0.0", port))
                .map_err(|e| TrainError::Config(format!("multi-node: cannot open the coordinator port {port}: {e}")))?,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| TrainError::Config(format!("multi-node: cannot start the coordinator's runtime: {e}")))?;
        std::thread::Builder::new()
            .name("bioseg-coordinator".into())
            .spawn(move || {
                runtime.block_on(burn_collective::start_global_orchestrator(port));
                eprintln!("bioseg-train: coordinator stopped (signal), exiting");
                std::process::exit(130);
            })
            .map_err(|e| TrainError::Config(format!("multi-node: cannot start the coordinator: {e}")))?;
        tracing::info!("coordinator listening on port {port}");
        Ok(())
    }

    /// One optimisation step of a multi-node run: this node's `batch` (its shard of the global
    /// batch, `nodes × batch.len()` samples) over the local `devices`, gradients summed over the
    /// devices and the nodes, then one optimizer step. Returns the updated model (identical on
    /// every node) and the global batch's mean loss.
    pub fn step<B, M, O>(
        model: M,
        optim: &mut O,
        loss: &Loss,
        batch: &[Sample],
        devices: &[B::Device],
        learning_rate: f64,
        collective: &Collective<B>,
    ) -> Result<(M, f64), TrainError>
    where
        B: AutodiffBackend,
        M: SegmentationNet<B> + AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let global_total = batch.len() * collective.nodes();
        let (multi, value) = crate::train::data_parallel::replica_gradients(&model, loss, batch, devices, global_total);
        let (grads, sums) = collective.all_reduce_grads(&model, multi, &[value])?;
        Ok((optim.step(learning_rate, model, grads), sums[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_of_slurm_node_lists() {
        assert_eq!(first_host("cn0003").as_deref(), Some("cn0003"));
        assert_eq!(first_host("cn[0003-0006,0010],gpu7").as_deref(), Some("cn0003"));
        assert_eq!(first_host("gpu7,cn[1-2]").as_deref(), Some("gpu7"));
        assert_eq!(first_host("cn[12,14]-ib").as_deref(), Some("cn12-ib"));
        assert_eq!(first_host("").as_deref(), None);
    }

    #[test]
    fn topology_from_flags_and_slurm() {
        let none = |_: &str| None;
        assert_eq!(MultiNodeArgs::default().resolve_with(none).unwrap(), None);
        let slurm = |k: &str| match k {
            "SLURM_NNODES" => Some("4".to_string()),
            "SLURM_NODEID" => Some("2".to_string()),
            "SLURM_JOB_NODELIST" => Some("cn[0101-0104]".to_string()),
            "SLURMD_NODENAME" => Some("cn0103".to_string()),
            _ => None,
        };
        let c = MultiNodeArgs::default().resolve_with(slurm).unwrap().unwrap();
        assert_eq!(
            c,
            MultiNodeConfig {
                nodes: 4,
                rank: 2,
                coordinator_host: "cn0101".into(),
                coordinator_port: DEFAULT_COORDINATOR_PORT,
                node_host: "cn0103".into(),
                data_port: DEFAULT_COORDINATOR_PORT + 3,
                join_timeout_s: DEFAULT_JOIN_TIMEOUT_S,
            }
        );
        let flags = MultiNodeArgs {
            nodes: Some(2),
            rank: Some(1),
            coordinator: Some("127.0.0.1:31000".into()),
            node_address: Some("127.0.0.1".into()),
            data_port: None,
            join_timeout_s: Some(5),
        };
        let c = flags.resolve_with(slurm).unwrap().unwrap();
        assert_eq!((c.nodes, c.rank, c.coordinator_port, c.data_port), (2, 1, 31000, 31002));
        assert_eq!(c.join_timeout_s, 5);
        assert!(MultiNodeArgs { nodes: Some(2), ..Default::default() }.resolve_with(none).is_err());
        assert!(MultiNodeArgs { nodes: Some(2), rank: Some(2), ..flags.clone() }.resolve_with(none).is_err());
        assert_eq!(MultiNodeArgs { nodes: Some(1), ..Default::default() }.resolve_with(slurm).unwrap(), None);
        assert_eq!(split_host_port("[::1]:5").unwrap(), ("[::1]".to_string(), 5));
    }
}
