//! What bioseg's graph passes share (gemm_conv.rs, max_pool.rs, resize.rs, softmax.rs,
//! conv_transpose.rs, repeat_chain.rs, pointwise.rs): each walks a decluttered tract model in evaluation
//! order and swaps in bioseg's op where it computes the same thing.

use tract_core::internal::*;

/// Replaces, in evaluation order, every node for which `choose` returns an op by that op, wired
/// to the node's first input; returns how many were replaced.
pub(crate) fn replace_each(
    model: &mut TypedModel,
    mut choose: impl FnMut(&TypedModel, &TypedNode) -> TractResult<Option<Box<dyn TypedOp>>>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        if node.inputs.is_empty() {
            continue;
        }
        let Some(op) = choose(model, node)? else { continue };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Replaces the chain of nodes from the one reading `inputs` to `last` (whose intermediate
/// outputs nothing else reads) by `op`, named `name` and wired to `inputs`.
pub(crate) fn replace_chain(
    model: &mut TypedModel,
    inputs: &[OutletId],
    last: usize,
    name: &str,
    op: impl Into<Box<dyn TypedOp>>,
) -> TractResult<()> {
    let mut patch = TypedModelPatch::default();
    let taps = inputs.iter().map(|&i| patch.tap_model(model, i)).collect::<TractResult<Vec<_>>>()?;
    let y = patch.wire_node(name, op, &taps)?[0];
    patch.shunt_outside(model, OutletId::new(last, 0), y)?;
    patch.apply(model)
}

/// The node that alone consumes `node`'s output and the input slot it reads it on, unless that
/// output is also a model output: what a pass may fold into the op computing `node` (a ReLU
/// after a convolution, a batch norm after a transposed one, a chain of shape operations).
pub(crate) fn sole_consumer<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(&'m TypedNode, usize)>> {
    let succ = &node.outputs[0].successors;
    if succ.len() != 1 || model.output_outlets()?.contains(&OutletId::new(node.id, 0)) {
        return Ok(None);
    }
    Ok(Some((&model.nodes[succ[0].node], succ[0].slot)))
}
