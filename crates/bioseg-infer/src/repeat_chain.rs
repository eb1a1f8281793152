//! Up-sampling written as shape operations, recognised by what it computes.
//!
//! tf2onnx writes Keras' `UpSampling2D` (`repeat_elements` on the rows, then on the columns)
//! as `Unsqueeze → Tile → Transpose → Reshape`, twice, and a `Transpose` to channels first
//! before the next convolution; tract keeps these as `AxisOp` moves and reshapes and
//! `MultiBroadcastTo` copies of the up-sampled tensor: 39 % of a 544² window of the Keras
//! fixture U-Net (`MoveAxis` 28 %, `MultiBroadcastTo` 11 %).
//!
//! [`repeat_chains_as_upsamples`] finds every chain of single-input shape operations (axis
//! moves, additions, removals and reshapes, broadcasts, tiles) that copies or repeats values,
//! runs it on a probe tensor holding each element's index, and when the result is a nearest
//! up-sampling by whole factors of the chain's input, possibly with its axes permuted, replaces
//! the chain by the permutation (on the small tensor) followed by tract's `NearestUpsample`,
//! which the convolution pass then folds into the convolution it feeds (gemm_conv.rs). The
//! replacement is run on the same probe and must give the same indices, so the pass can only
//! rewrite what it has checked; patterns are never matched by node names.

use tract_core::internal::*;
use tract_core::ops::array::{MultiBroadcastTo, Tile};
use tract_core::ops::change_axes::perm_to_ops;
use tract_core::ops::nn::resize::NearestUpsample;
use tract_core::plan::SimplePlan;

/// Most elements of a chain's output to probe (the probe and its results are i64 tensors).
const PROBE_LIMIT: usize = 1 << 26;

/// Whether `node` only moves, copies or repeats the values of its single input.
fn is_shape_op(node: &TypedNode) -> bool {
    node.inputs.len() == 1 && (node.op_is::<AxisOp>() || node.op_is::<MultiBroadcastTo>() || node.op_is::<Tile>())
}

/// Whether `node` repeats values (the chains worth probing).
fn repeats(node: &TypedNode) -> bool {
    node.op_is::<MultiBroadcastTo>() || node.op_is::<Tile>()
}

/// The chains: each a run of shape operations, every one the only consumer of the previous
/// one's output, starting where the input does not come from another shape operation.
fn chains(model: &TypedModel) -> TractResult<Vec<Vec<usize>>> {
    let mut chains = Vec::new();
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        if !is_shape_op(node) || is_shape_op(model.node(node.inputs[0].node)) {
            continue;
        }
        let mut chain = vec![id];
        while let Some((next, _)) = crate::passes::sole_consumer(model, &model.nodes[*chain.last().unwrap_or(&id)])?
            .filter(|(next, _)| is_shape_op(next))
        {
            chain.push(next.id);
        }
        if chain.iter().any(|&n| repeats(&model.nodes[n])) {
            chains.push(chain);
        }
    }
    Ok(chains)
}

/// The probe: element `i` of a tensor of `shape` holds `i`.
fn probe(shape: &[usize]) -> TractResult<Tensor> {
    let values: Vec<i64> = (0..shape.iter().product::<usize>() as i64).collect();
    Tensor::from_shape(shape, &values)
}

/// Runs `ops` (each of one input) one after the other on `input`.
fn run_ops(ops: Vec<Box<dyn TypedOp>>, input: &Tensor) -> TractResult<Tensor> {
    let mut model = TypedModel::default();
    let mut wire = model.add_source("probe", i64::fact(input.shape()))?;
    for (i, op) in ops.into_iter().enumerate() {
        wire = model.wire_node(format!("op{i}"), op, &[wire])?[0];
    }
    model.select_output_outlets(&[wire])?;
    let plan = SimplePlan::new(model)?;
    Ok(plan.run(tvec!(input.clone().into_tvalue()))?.remove(0).into_tensor())
}

/// `(perm, factors)` such that `output = permute(upsample(input, factors), perm)` (output axis
/// `i` is up-sampled input axis `perm[i]`), found by comparing the probe's indices.
fn as_permuted_upsample(input: &[usize], output: &Tensor) -> TractResult<Option<(Vec<usize>, Vec<usize>)>> {
    let rank = input.len();
    if output.rank() != rank || rank > 6 {
        return Ok(None);
    }
    let got = output.to_plain_array_view::<i64>()?;
    for perm in permutations(rank) {
        // Output axis i has length input[perm[i]] · factor[perm[i]].
        let mut factors = vec![0; rank];
        let fits = (0..rank).all(|i| {
            let (len_in, len_out) = (input[perm[i]], output.shape()[i]);
            factors[perm[i]] = len_out / len_in.max(1);
            len_in > 0 && len_out.is_multiple_of(len_in)
        });
        if !fits || factors.iter().all(|&f| f == 1) {
            continue;
        }
        let strides: Vec<usize> = (0..rank).map(|a| input[a + 1..].iter().product()).collect();
        let matches = got.indexed_iter().all(|(index, &v)| {
            let source: usize = (0..rank).map(|i| index[i] / factors[perm[i]] * strides[perm[i]]).sum();
            v == source as i64
        });
        if matches {
            return Ok(Some((perm, factors)));
        }
    }
    Ok(None)
}

/// Every permutation of `0..n`, the identity first.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    let mut all = vec![(0..n).collect::<Vec<_>>()];
    let mut c = vec![0; n];
    let mut p: Vec<usize> = (0..n).collect();
    let mut i = 0;
    // Heap's algorithm.
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                p.swap(0, i)
            } else {
                p.swap(c[i], i)
            }
            all.push(p.clone());
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    all
}

/// The replacement of a chain: the axis moves of `perm`, then the up-sampling.
fn replacement(perm: &[usize], factors: &[usize]) -> Vec<Box<dyn TypedOp>> {
    let mut ops: Vec<Box<dyn TypedOp>> = perm_to_ops(perm).into_iter().map(|op| Box::new(op) as _).collect();
    let scales = perm.iter().map(|&a| factors[a]).collect();
    ops.push(Box::new(NearestUpsample { scales }));
    ops
}

/// Replaces every chain of shape operations that computes a (permuted) nearest up-sampling by
/// whole factors (see the module documentation); returns how many. Run on a decluttered model
/// with concrete shapes, before the convolution pass.
pub fn repeat_chains_as_upsamples(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for chain in chains(model)? {
        let (first, last) = (&model.nodes[chain[0]], &model.nodes[chain[chain.len() - 1]]);
        let source = first.inputs[0];
        let Some(input) = model.outlet_fact(source)?.shape.as_concrete().map(|s| s.to_vec()) else { continue };
        let out_len = last.outputs[0].fact.shape.as_concrete().map(|s| s.iter().product::<usize>());
        if model.outlet_fact(source)?.datum_type != f32::datum_type() || out_len.is_none_or(|n| n > PROBE_LIMIT) {
            continue;
        }
        let x = probe(&input)?;
        let ops: Vec<Box<dyn TypedOp>> = chain.iter().map(|&n| model.nodes[n].op.clone()).collect();
        // A chain that does not run on the probe (an op that needs floats) is left alone.
        let Ok(expected) = run_ops(ops, &x) else { continue };
        let Some((perm, factors)) = as_permuted_upsample(&input, &expected)? else { continue };
        if run_ops(replacement(&perm, &factors), &x)? != expected {
            continue;
        }
        let mut patch = TypedModelPatch::default();
        let mut wire = patch.tap_model(model, source)?;
        let name = &last.name;
        for (i, op) in replacement(&perm, &factors).into_iter().enumerate() {
            wire = patch.wire_node(format!("{name}.bioseg_upsample.{i}"), op, &[wire])?[0];
        }
        patch.shunt_outside(model, OutletId::new(last.id, 0), wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_all_there_once() {
        let all = permutations(4);
        assert_eq!(all.len(), 24);
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 24);
        assert_eq!(all[0], vec![0, 1, 2, 3]);
    }

    /// Keras' repeat_elements on an NHWC tensor, rows then columns, then a transpose to NCHW:
    /// one permuted up-sampling, which the pass replaces with the same values.
    #[test]
    fn keras_repeat_chain_becomes_a_permuted_upsample() {
        let (n, h, w, c) = (1usize, 3usize, 4usize, 5usize);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([n, h, w, c])).unwrap();
        // Rows: [n, h, w, c] → [n, h, 1, w, c] → broadcast [n, h, 2, w, c] → [n, 2h, w, c].
        let mut y = model.wire_node("add_r", AxisOp::Add(2), &[x]).unwrap();
        y = model.wire_node("rep_r", MultiBroadcastTo { shape: ShapeFact::from(&[n, h, 2, w, c]) }, &y).unwrap();
        y = model
            .wire_node("merge_r", AxisOp::Reshape(1, tvec!(h.to_dim(), 2.to_dim()), tvec!((2 * h).to_dim())), &y)
            .unwrap();
        // Columns with a tile: [n, 2h, w, c] → [n, 2h, w, 1, c] → tile ×2 → [n, 2h, 2w, c].
        y = model.wire_node("add_c", AxisOp::Add(3), &y).unwrap();
        y = model
            .wire_node("rep_c", Tile { multipliers: tvec!(1.into(), 1.into(), 1.into(), 2.into(), 1.into()) }, &y)
            .unwrap();
        y = model
            .wire_node("merge_c", AxisOp::Reshape(2, tvec!(w.to_dim(), 2.to_dim()), tvec!((2 * w).to_dim())), &y)
            .unwrap();
        // To NCHW.
        y = model.wire_node("nchw", AxisOp::Move(3, 1), &y).unwrap();
        model.select_output_outlets(&y).unwrap();
        let values: Vec<f32> = (0..n * h * w * c).map(|i| i as f32 * 0.5 - 3.0).collect();
        let input = Tensor::from_shape(&[n, h, w, c], &values).unwrap();
        let run = |m: &TypedModel| {
            SimplePlan::new(m.clone()).unwrap().run(tvec!(input.clone().into_tvalue())).unwrap()[0]
                .clone()
                .into_tensor()
        };
        let expected = run(&model);
        assert_eq!(expected.shape(), [n, c, 2 * h, 2 * w]);
        let mut rewritten = model.clone();
        assert_eq!(repeat_chains_as_upsamples(&mut rewritten).unwrap(), 1);
        let rewritten = rewritten.into_decluttered().unwrap();
        let names: Vec<String> = rewritten.nodes().iter().map(|n| n.op().name().to_string()).collect();
        assert!(names.iter().any(|n| n == "NearestUpsample"), "{names:?}");
        assert!(!names.iter().any(|n| n == "MultiBroadcastTo" || n == "Tile"), "{names:?}");
        assert_eq!(run(&rewritten), expected);
    }

    /// A chain that repeats values but is no up-sampling (a tile of the whole image) stays.
    #[test]
    fn tiling_the_whole_image_is_left_alone() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 2, 3, 3])).unwrap();
        let y =
            model.wire_node("tile", Tile { multipliers: tvec!(1.into(), 1.into(), 2.into(), 2.into()) }, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        assert_eq!(repeat_chains_as_upsamples(&mut model).unwrap(), 0);
    }
}
