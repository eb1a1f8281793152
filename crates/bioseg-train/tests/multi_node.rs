//! Multi-node data parallel on one machine.
//!
//! - Every build: a node whose peers never come fails cleanly (no hang): without the
//!   `collective` feature it asks for it; with it, it gives up after `--join-timeout`.
//!   Bad topologies are refused before any work.
//! - Feature `collective` (the workspace test command enables it): 2 and 3 `bioseg-train unet`
//!   processes with `--nodes N` on localhost ports train the same tiny U-Net; all must end with
//!   the same weights, equal (1e-5) to one process trained on the concatenated global batch.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bioseg_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bioseg-train"))
}

#[cfg_attr(not(feature = "collective"), allow(dead_code))]
fn onnx_weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let model = bioseg_onnx::read_model(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    model
        .graph
        .unwrap()
        .initializer
        .iter()
        .map(|t| (t.name.clone(), bioseg_onnx::initializer_to_f32(t).unwrap()))
        .collect()
}

#[cfg_attr(not(feature = "collective"), allow(dead_code))]
fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut max = 0.0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        assert_eq!(va.len(), vb.len(), "{na}");
        for (x, y) in va.iter().zip(vb) {
            max = max.max((x - y).abs());
        }
    }
    max
}

/// A port `p` with `p + 1` … `p + 3` (the nodes' data ports) free too.
fn free_ports() -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let p = l.local_addr().unwrap().port();
        if p > 65000 {
            continue;
        }
        let others: Vec<_> = (1..=3).map(|i| std::net::TcpListener::bind(("0.0.0.0", p + i))).collect();
        if others.iter().all(|o| o.is_ok()) {
            return p;
        }
    }
    panic!("no free ports");
}

fn common(cmd: &mut Command, data: &Path, out: &Path) {
    cmd.args(["unet", "-d"])
        .arg(data)
        .arg("-o")
        .arg(out)
        .args(["-c", "membrane", "-F", "4", "--depth", "2", "-X", "32", "-Y", "32", "-e", "2"])
        .args(["--steps-per-epoch", "2", "--drop-rate", "0", "-l", "1e-2", "--seed", "3", "--device", "cpu"])
        .arg("--quiet")
        .env_remove("SLURM_NNODES")
        .env_remove("SLURM_STEP_NUM_NODES")
        .env_remove("SLURM_NODEID")
        .env_remove("BIOSEG_COORDINATOR");
}

#[cfg_attr(not(feature = "collective"), allow(dead_code))]
fn wait(mut child: Child, what: &str, deadline: Instant) -> String {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(status.success(), "{what} failed ({status}):\n{text}");
            return text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish in time:\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn synth(data: &Path) {
    let st = bioseg_train()
        .args(["synth", "--train", "4", "--test", "1", "--size", "64", "-o"])
        .arg(data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn two_nodes_fail_cleanly_instead_of_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let port = free_ports();
    let mut cmd = bioseg_train();
    common(&mut cmd, &data, &tmp.path().join("out"));
    cmd.args(["-b", "2", "--nodes", "2", "--node-rank", "0"])
        .args(["--coordinator", &format!("127.0.0.1:{port}"), "--node-address", "127.0.0.1"])
        .args(["--join-timeout", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut child = child;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "--nodes 2 hung");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success());
    assert_ne!(status.code(), Some(101), "panicked:\n{stderr}");
    #[cfg(feature = "collective")]
    assert!(stderr.contains("not all 2 nodes joined") && stderr.contains("within 3 s"), "{stderr}");
    assert!(!tmp.path().join("out").exists(), "a failed join left an output folder");
    #[cfg(not(feature = "collective"))]
    assert!(stderr.contains("--features collective"), "{stderr}");
    // Bad topologies are refused before any work.
    let mut cmd = bioseg_train();
    common(&mut cmd, &data, &tmp.path().join("out"));
    let out = cmd.args(["--nodes", "2", "--node-rank", "2", "--coordinator", "127.0.0.1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-rank 2 is not below --nodes 2"));
}

/// `nodes` processes with `-b 2` each equal one process with `-b 2·nodes`.
#[cfg(feature = "collective")]
fn nodes_equal_one_process_on_the_global_batch(nodes: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);

    // One process, the global batch.
    let single = tmp.path().join("single");
    let mut cmd = bioseg_train();
    common(&mut cmd, &data, &single);
    cmd.args(["-b", &(2 * nodes).to_string()]).stdout(Stdio::piped()).stderr(Stdio::piped());
    wait(cmd.spawn().unwrap(), "single process", Instant::now() + Duration::from_secs(600));

    // The nodes, 2 samples each, one shared output folder (as under srun).
    let port = free_ports();
    let multi = tmp.path().join("multi");
    let children: Vec<Child> = (0..nodes)
        .map(|rank| {
            let mut cmd = bioseg_train();
            common(&mut cmd, &data, &multi);
            cmd.args(["-b", "2", "--nodes", &nodes.to_string(), "--node-rank", &rank.to_string()])
                .args(["--coordinator", &format!("127.0.0.1:{port}"), "--node-address", "127.0.0.1"])
                .args(["--join-timeout", "120"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let logs: Vec<String> =
        children.into_iter().enumerate().map(|(r, c)| wait(c, &format!("node {r}"), deadline)).collect();

    let w_single = onnx_weights(&single.join("model.onnx"));
    let w0 = onnx_weights(&multi.join("model.onnx"));
    let diff = max_diff(&w_single, &w0);
    assert!(diff <= 1e-5, "{nodes} nodes differ from one process on the global batch by {diff}");
    let hs: serde_json::Value = serde_json::from_slice(&std::fs::read(single.join("history.json")).unwrap()).unwrap();
    let h0: serde_json::Value = serde_json::from_slice(&std::fs::read(multi.join("history.json")).unwrap()).unwrap();
    let loss = |h: &serde_json::Value, e: usize| h[e]["train_loss"].as_f64().unwrap();
    assert!((loss(&h0, 1) - loss(&hs, 1)).abs() < 1e-5, "{} vs {}", loss(&h0, 1), loss(&hs, 1));
    for rank in 1..nodes {
        let node = multi.join(format!("node-{rank}"));
        let w = onnx_weights(&node.join("model.onnx"));
        let d = max_diff(&w0, &w);
        assert_eq!(d, 0.0, "node {rank}'s final weights differ by {d}\n{}", logs.join("\n"));
        let h: serde_json::Value = serde_json::from_slice(&std::fs::read(node.join("history.json")).unwrap()).unwrap();
        assert_eq!(loss(&h0, 1), loss(&h, 1), "every node reports the global loss");
    }
}

#[cfg(feature = "collective")]
#[test]
fn two_nodes_on_localhost_equal_one_process_on_the_global_batch() {
    nodes_equal_one_process_on_the_global_batch(2);
}

#[cfg(feature = "collective")]
#[test]
fn three_nodes_on_localhost_equal_one_process_on_the_global_batch() {
    nodes_equal_one_process_on_the_global_batch(3);
}
