//! The input image of a convolution: one tensor, or several concatenated along the channels (a
//! `Concat` folded into the convolution, so the concatenated copy is never made), each channels
//! first or last.

/// Where channel `c` of the input is: in `data`, element (row, column) at
/// `base + row·row_stride + column·col_stride`.
#[derive(Clone, Copy)]
pub struct ChannelView<'a> {
    pub data: &'a [f32],
    pub base: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// One image (`h` × `w`) whose channels come from one or more parts, each channels first
/// (`[c, h, w]`) or last (`[h, w, c]`).
pub struct ConvInput<'a> {
    parts: Vec<(&'a [f32], usize)>,
    /// Part and channel within the part, for every channel.
    lookup: &'a [(usize, usize)],
    w: usize,
    h: usize,
    channels_last: bool,
}

impl<'a> ConvInput<'a> {
    /// `parts`: each part's data for this image and its channel count; `lookup` from
    /// [`channel_lookup`] for the same channel counts.
    pub fn new(
        parts: Vec<(&'a [f32], usize)>,
        lookup: &'a [(usize, usize)],
        (h, w): (usize, usize),
        channels_last: bool,
    ) -> Self {
        ConvInput { parts, lookup, w, h, channels_last }
    }

    /// Channel `c` of the whole input.
    #[inline]
    pub fn channel(&self, c: usize) -> ChannelView<'a> {
        let (p, local) = self.lookup[c];
        let (data, channels) = self.parts[p];
        if self.channels_last {
            ChannelView { data, base: local, row_stride: self.w * channels, col_stride: channels }
        } else {
            ChannelView { data, base: local * self.h * self.w, row_stride: self.w, col_stride: 1 }
        }
    }
}

/// (part, channel within the part) of every channel of parts with these channel counts.
pub fn channel_lookup(parts: &[usize]) -> Vec<(usize, usize)> {
    parts.iter().enumerate().flat_map(|(p, &n)| (0..n).map(move |c| (p, c))).collect()
}
