#!/usr/bin/env python3
"""Reference numbers for bioseg's segmentation scores (crates/bioseg-data/src/segmentation_scores.rs).

Writes into tests/fixtures/metrics/ (or --out DIR):

* <case>_true.npy, <case>_test.npy: uint32 label images (2-D, one case 3-D);
* for the boundary-map cases also <case>_truth_map.npy / <case>_pred_map.npy (float32 maps whose
  values above a threshold are cell interior) and the cells scipy finds in them
  (<case>_true.npy / <case>_test.npy, 4-connected components, 0 = boundary);
* manifest.json: for every case scikit-image's adapted_rand_error and variation_of_information
  (with and without ignoring label 0), and the ISBI 2012 foreground-restricted V_rand / V_info
  computed here with numpy straight from the definitions (Arganda-Carreras et al. 2015).

Deterministic (numpy default_rng with fixed seeds); run:
    tools/metrics/.venv/bin/python tools/metrics/make_fixtures.py
"""

import argparse
import json
import math
import pathlib

import numpy as np
import scipy
import scipy.ndimage as ndi
import skimage
from skimage.metrics import adapted_rand_error, variation_of_information

ROOT = pathlib.Path(__file__).resolve().parents[2]


def isbi_scores(proposal, truth, alpha=0.5):
    """Foreground-restricted V_rand and V_info (ISBI 2012), straight from the definitions.

    Pixels with truth label 0 (boundary) are left out; proposal label 0 pixels (boundary) are
    singleton segments. Dense counting with np.unique, independent of the Rust code's layout.
    """
    t = truth.ravel().astype(np.int64)
    s = proposal.ravel().astype(np.int64)
    keep = t != 0
    t, s = t[keep], s[keep]
    n = t.size
    if n == 0:
        return dict(v_rand=1.0, v_rand_split=1.0, v_rand_merge=1.0,
                    v_info=1.0, v_info_split=1.0, v_info_merge=1.0)
    # Give every proposed boundary pixel its own fresh label.
    s = s.copy()
    zero = np.flatnonzero(s == 0)
    s[zero] = s.max() + 1 + np.arange(zero.size)
    _, pair_counts = np.unique(np.stack([t, s]), axis=1, return_counts=True)
    _, t_counts = np.unique(t, return_counts=True)
    _, s_counts = np.unique(s, return_counts=True)
    p = pair_counts / n
    tt = t_counts / n
    ss = s_counts / n
    sum_p2, sum_t2, sum_s2 = (p * p).sum(), (tt * tt).sum(), (ss * ss).sum()
    h = lambda q: float(-(q * np.log(q)).sum())
    h_s, h_t, h_st = h(ss), h(tt), h(p)
    info = max(h_s + h_t - h_st, 0.0)

    def ratio(a, b):
        return 1.0 if b <= 0 else min(max(a / b, 0.0), 1.0)

    return dict(
        v_rand=ratio(sum_p2, alpha * sum_s2 + (1 - alpha) * sum_t2),
        v_rand_split=ratio(sum_p2, sum_t2),
        v_rand_merge=ratio(sum_p2, sum_s2),
        v_info=ratio(info, (1 - alpha) * h_s + alpha * h_t),
        v_info_split=ratio(info, h_s),
        v_info_merge=ratio(info, h_t),
    )


def cells(map_, threshold):
    """4-connected components of map > threshold (scipy's default 2-D structure is 4-connected)."""
    labels, _ = ndi.label(map_ > threshold)
    return labels.astype(np.uint32)


def blob_map(rng, shape, n_seeds, width):
    """A membrane-like map: 1 inside cells, 0 on a band of `width` px around Voronoi borders."""
    h, w = shape
    seeds = rng.uniform([0, 0], [h, w], size=(n_seeds, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.sqrt((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2)
    d.sort(axis=-1)
    return (d[..., 1] - d[..., 0] > width).astype(np.float32)


def make_cases():
    cases = []
    rng = np.random.default_rng(20120)

    # 1. Random labels (many small segments, label 0 present in both).
    cases.append(("random", rng.integers(0, 5, (16, 16)), rng.integers(0, 6, (16, 16)), None))
    # 2. Random labels, larger, sparse label values (non-contiguous ids).
    t = rng.choice([0, 3, 17, 1000, 65536], size=(24, 20))
    s = rng.choice([0, 2, 9, 123456], size=(24, 20))
    cases.append(("random_sparse_ids", t, s, None))

    # 3. Structured: cells separated by membrane lines; the proposal misses one membrane (merge)
    #    and adds one (split).
    truth_map = np.ones((20, 30), np.float32)
    truth_map[:, [9, 19]] = 0
    truth_map[10, :] = 0
    pred_map = truth_map.copy()
    pred_map[10, 0:9] = 1  # merge the two left cells
    pred_map[:, 25] = 0  # split the right cells
    cases.append(("structured", cells(truth_map, 0.5), cells(pred_map, 0.5), (truth_map, pred_map)))

    # 4. Touching components: two true cells share a border with no membrane; the proposal
    #    merges them, and a third cell is shifted by one pixel.
    t = np.zeros((12, 12), np.uint32)
    t[1:6, 1:6] = 1
    t[1:6, 6:11] = 2  # touches cell 1
    t[7:11, 2:10] = 3
    s = np.zeros_like(t)
    s[1:6, 1:11] = 5
    s[8:12, 2:10] = 6
    cases.append(("touching", t, s, None))

    # 5. An EM-like boundary map (Voronoi cells with membranes) and a noisy probability map of it.
    truth_map = blob_map(rng, (48, 64), 14, 1.5) * 255.0
    prob = np.clip(truth_map / 255.0 + rng.normal(0, 0.35, truth_map.shape), 0, 1)
    prob = ndi.gaussian_filter(prob, 0.8).astype(np.float32)
    cases.append(("em_like", cells(truth_map, 127.5), cells(prob, 0.5), (truth_map.astype(np.float32), prob)))

    # 6. A 3-D stack of random labels (adapted Rand error and VI work on any dimension).
    cases.append(("stack3d", rng.integers(0, 4, (3, 8, 8)), rng.integers(0, 3, (3, 8, 8)), None))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "fixtures" / "metrics")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in list(args.out.glob("*.npy")) + [args.out / "manifest.json"]:
        if old.exists():
            old.unlink()

    manifest = {
        "versions": {"scikit-image": skimage.__version__, "numpy": np.__version__, "scipy": scipy.__version__},
        "tolerance": 1e-6,
        "cases": [],
    }
    for name, t, s, maps in make_cases():
        t = np.ascontiguousarray(t, dtype=np.uint32)
        s = np.ascontiguousarray(s, dtype=np.uint32)
        np.save(args.out / f"{name}_true.npy", t)
        np.save(args.out / f"{name}_test.npy", s)
        entry = {"name": name, "true": f"{name}_true.npy", "test": f"{name}_test.npy", "shape": list(t.shape)}
        are = {}
        for ignore in ([0], []):
            e, p, r = adapted_rand_error(t, s, ignore_labels=ignore)
            are["ignore_0" if ignore else "ignore_none"] = {"error": float(e), "precision": float(p), "recall": float(r)}
        entry["adapted_rand_error"] = are
        vi = {}
        for ignore in ([0], []):
            a, b = variation_of_information(t, s, ignore_labels=ignore)
            vi["ignore_0" if ignore else "ignore_none"] = [float(a), float(b)]
        entry["variation_of_information"] = vi
        if t.ndim == 2:
            entry["isbi"] = isbi_scores(s, t)
        if maps is not None:
            truth_map, pred_map = maps
            np.save(args.out / f"{name}_truth_map.npy", truth_map.astype(np.float32))
            np.save(args.out / f"{name}_pred_map.npy", pred_map.astype(np.float32))
            thr = 127.5 if truth_map.max() > 1 else 0.5
            entry["maps"] = {
                "truth": f"{name}_truth_map.npy",
                "truth_threshold": thr,
                "pred": f"{name}_pred_map.npy",
                "pred_threshold": 0.5,
            }
        for k, v in entry.items():
            if isinstance(v, dict):
                for vv in v.values():
                    vals = vv.values() if isinstance(vv, dict) else (vv if isinstance(vv, list) else [vv])
                    assert all(isinstance(x, (int, str)) or math.isfinite(x) for x in vals), (name, k, v)
        manifest["cases"].append(entry)
        isbi = entry.get("isbi", {})
        print(
            f"{name:18s} ARE {are['ignore_0']['error']:.6f}  VI {sum(vi['ignore_none']):.6f}"
            + (f"  V_rand {isbi['v_rand']:.6f}  V_info {isbi['v_info']:.6f}" if isbi else "")
        )
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(manifest['cases'])} cases to {args.out}")


if __name__ == "__main__":
    main()
