//! MusicGen's codebook delay pattern, on plain token grids.
//!
//! Codebook `k` runs `delay(k)` steps behind the first (`k` for mono,
//! `k / 2` for stereo, where left / right codebooks alternate). A sequence
//! of `L` columns (the start column included) fixes codebook `k` to the pad
//! token in columns `0 ..= delay(k)` and from `delay(k) + L - C + 1` on,
//! where `C` is the number of codebooks per channel; an audio prompt fills
//! the columns after the start column. Every other position is predicted.

/// A position of the pattern: fixed to a token, or predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The token at this position is known (pad or prompt).
    Fixed(u32),
    /// The model predicts this position.
    Free,
}

/// The delay pattern of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct DelayPattern {
    /// `slots[k][j]`: codebook `k`, column `j`.
    slots: Vec<Vec<Slot>>,
    pad: u32,
}

impl DelayPattern {
    /// The pattern for `prompt` (`[codebook][frame]`, all rows the same
    /// length, possibly empty) followed by `new_tokens` decoder steps, with
    /// `channels` audio channels (1 or 2) and pad token `pad`.
    pub fn new(prompt: &[Vec<u32>], new_tokens: usize, channels: usize, pad: u32) -> Self {
        let codebooks = prompt.len();
        let per_channel = codebooks / channels.max(1);
        let n = prompt.first().map_or(0, Vec::len);
        let len = n + 1 + new_tokens;
        let slots = prompt
            .iter()
            .enumerate()
            .map(|(k, row)| {
                let d = k / channels.max(1);
                (0..len)
                    .map(|j| {
                        if j <= d || j + per_channel > d + len {
                            Slot::Fixed(pad)
                        } else if j - d - 1 < n {
                            Slot::Fixed(row[j - d - 1])
                        } else {
                            Slot::Free
                        }
                    })
                    .collect()
            })
            .collect();
        Self { slots, pad }
    }

    /// Columns in the whole sequence (start column included).
    pub fn len(&self) -> usize {
        self.slots.first().map_or(0, Vec::len)
    }

    /// Whether the pattern has no column.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first column the model must predict (the end when none is).
    pub fn first_free(&self) -> usize {
        self.slots
            .first()
            .and_then(|row| row.iter().position(|s| *s == Slot::Free))
            .unwrap_or(self.len())
    }

    /// Column `j` of every codebook, with `predicted[k]` where the pattern
    /// leaves codebook `k` free.
    pub fn column(&self, j: usize, predicted: &[u32]) -> Vec<u32> {
        self.slots
            .iter()
            .zip(predicted)
            .map(|(row, &p)| match row[j] {
                Slot::Fixed(t) => t,
                Slot::Free => p,
            })
            .collect()
    }

    /// Column `j` where every position is fixed (the prefix before
    /// [`first_free`](Self::first_free)).
    pub fn fixed_column(&self, j: usize) -> Vec<u32> {
        self.column(j, &vec![self.pad; self.slots.len()])
    }

    /// Undoes the delays of a full sequence `columns[j][k]`: the frames of
    /// every codebook, `[codebook][frame]`, without the pad positions.
    pub fn frames(&self, columns: &[Vec<u32>]) -> Vec<Vec<u32>> {
        self.slots
            .iter()
            .enumerate()
            .map(|(k, row)| {
                row.iter()
                    .zip(columns)
                    .filter(|(s, _)| **s != Slot::Fixed(self.pad))
                    .map(|(_, col)| col[k])
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u32 = 99;

    fn show(p: &DelayPattern) -> Vec<Vec<i64>> {
        p.slots
            .iter()
            .map(|r| {
                r.iter()
                    .map(|s| match s {
                        Slot::Fixed(t) => *t as i64,
                        Slot::Free => -1,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_documented_pattern() {
        // transformers' build_delay_pattern_mask docstring: 4 codebooks,
        // length 8, no prompt
        let p = DelayPattern::new(&vec![vec![]; 4], 7, 1, P);
        assert_eq!(
            show(&p),
            vec![
                vec![P as i64, -1, -1, -1, -1, 99, 99, 99],
                vec![99, 99, -1, -1, -1, -1, 99, 99],
                vec![99, 99, 99, -1, -1, -1, -1, 99],
                vec![99, 99, 99, 99, -1, -1, -1, -1],
            ]
        );
        assert_eq!(p.first_free(), 1);
        // 7 new tokens -> 7 - 3 = 4 frames per codebook
        let cols: Vec<Vec<u32>> = (0..8).map(|j| vec![j as u32; 4]).collect();
        let f = p.frames(&cols);
        assert_eq!(f[0], vec![1, 2, 3, 4]);
        assert_eq!(f[3], vec![4, 5, 6, 7]);
    }

    #[test]
    fn prompts_fill_the_shifted_columns() {
        let prompt = vec![vec![10, 11], vec![20, 21], vec![30, 31], vec![40, 41]];
        let p = DelayPattern::new(&prompt, 6, 1, P);
        let s = show(&p);
        assert_eq!(s[0], vec![99, 10, 11, -1, -1, -1, 99, 99, 99]);
        assert_eq!(s[3], vec![99, 99, 99, 99, 40, 41, -1, -1, -1]);
        assert_eq!(p.first_free(), 3);
        assert_eq!(p.fixed_column(2), vec![11, 20, P, P]);
        assert_eq!(p.column(4, &[1, 2, 3, 4]), vec![1, 2, 31, 40]);
        // output frames include the prompt: 2 + 6 - 3
        let cols: Vec<Vec<u32>> = (0..9).map(|j| p.column(j, &[7; 4])).collect();
        assert_eq!(p.frames(&cols)[3], vec![40, 41, 7, 7, 7]);
    }

    #[test]
    fn stereo_pairs_share_a_delay() {
        let p = DelayPattern::new(&vec![vec![]; 8], 7, 2, P);
        let s = show(&p);
        assert_eq!(s[0], s[1]);
        assert_eq!(s[6], s[7]);
        assert_eq!(s[2], vec![99, 99, -1, -1, -1, -1, 99, 99]);
    }
}
