//! Fitting music to a picture, on planar sample slices: fades, a cut at a
//! quiet moment, ducking one signal under another's activity, and a
//! look-ahead peak limiter.

/// Gain of a raised-cosine fade at `x` in `[0, 1]` (0 silent, 1 full).
pub fn fade_gain(x: f64) -> f32 {
    let x = x.clamp(0.0, 1.0);
    (0.5 - 0.5 * (std::f64::consts::PI * x).cos()) as f32
}

/// Fades the first `in_samples` of every channel in and the last
/// `out_samples` out (raised cosine); fades longer than the audio are
/// shortened to it.
pub fn apply_fades(channels: &mut [Vec<f32>], in_samples: usize, out_samples: usize) {
    for ch in channels.iter_mut() {
        let len = ch.len();
        let fade_in = in_samples.min(len);
        for (i, s) in ch.iter_mut().take(fade_in).enumerate() {
            *s *= fade_gain(i as f64 / fade_in as f64);
        }
        let fade_out = out_samples.min(len);
        for (i, s) in ch[len - fade_out..].iter_mut().enumerate() {
            *s *= fade_gain((fade_out - i - 1) as f64 / fade_out as f64);
        }
    }
}

/// Mean square over all channels of each `hop`-sample frame (the last
/// frame may be shorter).
pub fn frame_energy(channels: &[Vec<f32>], hop: usize) -> Vec<f64> {
    let hop = hop.max(1);
    let len = channels.first().map_or(0, Vec::len);
    (0..len.div_ceil(hop))
        .map(|f| {
            let (a, b) = (f * hop, ((f + 1) * hop).min(len));
            let sum: f64 = channels
                .iter()
                .flat_map(|c| &c[a..b])
                .map(|s| f64::from(*s) * f64::from(*s))
                .sum();
            sum / ((b - a) * channels.len()).max(1) as f64
        })
        .collect()
}

/// Where to end music so that no note is cut short: the middle of the
/// quietest `frame`-sample stretch that lies within `[earliest, latest]`
/// (sample indices, `latest` clamped to the audio), the later one on a
/// tie. Energy is smoothed over three frames so a single quiet frame
/// inside a note does not win.
pub fn quiet_cut(channels: &[Vec<f32>], earliest: usize, latest: usize, frame: usize) -> usize {
    let len = channels.first().map_or(0, Vec::len);
    let latest = latest.min(len);
    let frame = frame.max(1);
    if earliest + frame > latest {
        return latest;
    }
    let energy = frame_energy(channels, frame);
    let smooth = |f: usize| {
        let lo = f.saturating_sub(1);
        let hi = (f + 1).min(energy.len() - 1);
        energy[lo..=hi].iter().sum::<f64>() / (hi - lo + 1) as f64
    };
    let first = earliest.div_ceil(frame);
    let last = latest / frame; // frames ending at or before `latest`
    (first..last)
        .map(|f| (smooth(f), f))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map_or(latest, |(_, f)| (f * frame + frame / 2).min(latest))
}

/// How one signal is lowered under another's activity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ducking {
    /// Gain applied where the key is active, dB (negative).
    pub depth_db: f64,
    /// Time to reach the ducked level, seconds.
    pub attack_s: f64,
    /// Time to come back up after the key falls silent, seconds.
    pub release_s: f64,
    /// The key counts as active above the louder of this level, dBFS,
    /// and `relative_db` below its own loud passages.
    pub floor_dbfs: f64,
    /// See `floor_dbfs`, dB.
    pub relative_db: f64,
}

impl Default for Ducking {
    fn default() -> Self {
        Self {
            depth_db: -12.0,
            attack_s: 0.05,
            release_s: 0.4,
            floor_dbfs: -45.0,
            relative_db: 25.0,
        }
    }
}

/// Level in dBFS of a mean square (`-inf` for silence).
fn ms_dbfs(ms: f64) -> f64 {
    10.0 * ms.log10()
}

/// Per-sample gains (linear, one for all channels) that lower a signal
/// under `key`'s activity: `duck.depth_db` where the key is active, 0 dB
/// elsewhere, moved with the attack and release times. Activity is read
/// in 10 ms frames; a frame is active when its level is above the
/// threshold `duck` sets, or within 200 ms of one that is (a pause between
/// words keeps the music down).
pub fn duck_gains(key: &[Vec<f32>], sample_rate_hz: u32, duck: &Ducking) -> Vec<f32> {
    let len = key.first().map_or(0, Vec::len);
    let hop = (sample_rate_hz as usize / 100).max(1);
    let levels: Vec<f64> = frame_energy(key, hop).into_iter().map(ms_dbfs).collect();
    let mut sorted: Vec<f64> = levels.iter().copied().filter(|l| l.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let loud = sorted
        .get(sorted.len().saturating_sub(1) * 95 / 100)
        .copied()
        .unwrap_or(f64::NEG_INFINITY);
    let threshold = duck.floor_dbfs.max(loud - duck.relative_db);
    let hold_frames = 20;
    let mut active = vec![false; levels.len()];
    let mut last_active: Option<usize> = None;
    for (f, l) in levels.iter().enumerate() {
        if *l > threshold {
            last_active = Some(f);
        }
        active[f] = last_active.is_some_and(|a| f - a <= hold_frames);
    }
    let low = super::db_to_gain(duck.depth_db);
    let per_sample = |t: f64| 1.0 - (-1.0 / (t.max(1e-4) * sample_rate_hz as f64)).exp();
    let (attack, release) = (per_sample(duck.attack_s), per_sample(duck.release_s));
    let mut g = 1.0f64;
    (0..len)
        .map(|i| {
            let target = if active[i / hop] { low } else { 1.0 };
            let rate = if target < g { attack } else { release };
            g += (target - g) * rate;
            g as f32
        })
        .collect()
}

/// What happens to a signal's own sound where music is laid over it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Under {
    /// The music replaces it, crossfading over this many samples at each
    /// edge that meets sound left as it was.
    Replaced {
        /// Crossfade length, samples.
        handover_samples: usize,
    },
    /// It stays under the music.
    Kept {
        /// Its gain, dB.
        gain_db: f64,
        /// The music lowered where it is active.
        duck: Option<Ducking>,
    },
}

/// Lays `music` over `sound` from sample `start`, for samples
/// `start..end` (music shorter than that leaves silence after it);
/// `sound` becomes the mix. Outside the span `sound` is untouched.
pub fn lay_over(
    sound: &mut [Vec<f32>],
    music: &[Vec<f32>],
    (start, end): (usize, usize),
    under: &Under,
    sample_rate_hz: u32,
) {
    let total = sound.first().map_or(0, Vec::len);
    let end = end.min(total);
    let (own_gain, ducked) = match under {
        Under::Kept { gain_db, duck } => {
            let span: Vec<Vec<f32>> = sound.iter().map(|c| c[start..end].to_vec()).collect();
            let ducked = duck.map(|d| duck_gains(&span, sample_rate_hz, &d));
            (Some(super::db_to_gain(*gain_db) as f32), ducked)
        }
        Under::Replaced { .. } => (None, None),
    };
    let own = |i: usize| match (own_gain, under) {
        (Some(g), _) => g,
        (None, Under::Replaced { handover_samples }) => {
            // distance to an edge that meets untouched sound
            let from_start = if start == 0 { usize::MAX } else { i - start };
            let to_end = if end == total {
                usize::MAX
            } else {
                end - 1 - i
            };
            let edge = from_start.min(to_end);
            if edge < *handover_samples {
                1.0 - edge as f32 / *handover_samples as f32
            } else {
                0.0
            }
        }
        (None, Under::Kept { .. }) => 1.0,
    };
    for (c, ch) in sound.iter_mut().enumerate() {
        let m = music.get(c).or(music.first());
        for i in start..end {
            let mut x = m.and_then(|m| m.get(i - start)).copied().unwrap_or(0.0);
            if let Some(d) = &ducked {
                x *= d[i - start];
            }
            ch[i] = ch[i] * own(i) + x;
        }
    }
}

/// The smallest value of `x` in each window `[n, n + window)`.
fn forward_min(x: &[f32], window: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    let mut dq: std::collections::VecDeque<usize> = Default::default();
    for n in (0..x.len()).rev() {
        while dq.back().is_some_and(|&j| x[j] >= x[n]) {
            dq.pop_back();
        }
        dq.push_back(n);
        while dq.front().is_some_and(|&j| j >= n + window) {
            dq.pop_front();
        }
        out[n] = x[dq[0]];
    }
    out
}

/// Per-sample gains (one for all channels) that keep every sample's
/// magnitude at or below `ceiling`, reaching each peak's gain over
/// `lookahead` samples before it and recovering over roughly `release`
/// samples after. Samples already under the ceiling far from any peak get
/// gain 1.
pub fn limiter_gains(
    channels: &[Vec<f32>],
    ceiling: f32,
    lookahead: usize,
    release: usize,
) -> Vec<f32> {
    let len = channels.first().map_or(0, Vec::len);
    let lookahead = lookahead.max(1);
    let needed: Vec<f32> = (0..len)
        .map(|i| {
            let peak = channels.iter().fold(0f32, |m, c| m.max(c[i].abs()));
            if peak > ceiling {
                ceiling / peak
            } else {
                1.0
            }
        })
        .collect();
    let floor = forward_min(&needed, lookahead);
    // a moving average of the look-ahead minimum over the same window stays
    // at or below every sample's need and moves smoothly
    let mut out = Vec::with_capacity(len);
    let mut sum = 0f64;
    let coef = 1.0 - (-1.0 / release.max(1) as f64).exp();
    let mut g = 1f64;
    for n in 0..len {
        sum += f64::from(floor[n]);
        if n >= lookahead {
            sum -= f64::from(floor[n - lookahead]);
        }
        // before the first full window, missing values count as the first
        // window's minimum, which is at or below every need in it
        let missing = lookahead.saturating_sub(n + 1) as f64;
        let avg = (sum + missing * f64::from(floor[0])) / lookahead as f64;
        g = avg.min(g + (1.0 - g) * coef);
        out.push(g as f32);
    }
    out
}

/// Multiplies every channel by `gains` sample by sample.
pub fn apply_gains(channels: &mut [Vec<f32>], gains: &[f32]) {
    for ch in channels.iter_mut() {
        for (s, g) in ch.iter_mut().zip(gains) {
            *s *= g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, amp: f32) -> Vec<f32> {
        (0..len).map(|i| amp * (i as f32 * 0.07).sin()).collect()
    }

    #[test]
    fn fades_start_and_end_silent_and_leave_the_middle() {
        let mut ch = vec![vec![1.0f32; 1000]];
        apply_fades(&mut ch, 100, 200);
        assert_eq!(ch[0][0], 0.0);
        assert!(ch[0][999] < 1e-3);
        assert!(ch[0][50] > 0.4 && ch[0][50] < 0.6, "{}", ch[0][50]);
        assert_eq!(ch[0][100..800], vec![1.0; 700][..]);
        assert!(ch[0][..100].windows(2).all(|w| w[0] <= w[1]));
        assert!(ch[0][800..].windows(2).all(|w| w[0] >= w[1]));
        // fades longer than the audio cover it
        let mut short = vec![vec![1.0f32; 10]];
        apply_fades(&mut short, 100, 100);
        assert!(short[0].iter().all(|s| (0.0..=1.0).contains(s)));
    }

    #[test]
    fn the_cut_falls_in_the_quiet_gap_inside_the_window() {
        // loud, a gap at 6000..6400, loud again, a quieter gap at 9000..9400
        // outside the window
        let mut x = tone(12000, 0.8);
        x[6000..6400].iter_mut().for_each(|s| *s *= 0.01);
        x[9000..9400].iter_mut().for_each(|s| *s = 0.0);
        let ch = vec![x.clone(), x];
        let cut = quiet_cut(&ch, 5000, 8000, 100);
        assert!((6000..6400).contains(&cut), "{cut}");
        let cut = quiet_cut(&ch, 5000, 12000, 100);
        assert!((9000..9400).contains(&cut), "{cut}");
        // a window too short for a frame ends at its end
        assert_eq!(quiet_cut(&ch, 7990, 8000, 100), 8000);
        assert_eq!(
            quiet_cut(&ch, 0, 99_999, 100),
            quiet_cut(&ch, 0, 12000, 100)
        );
    }

    #[test]
    fn ducking_follows_the_key_with_attack_and_release() {
        let sr = 8000;
        // key: silent 1 s, active 1 s, silent 1 s
        let mut key = vec![0.0f32; 3 * sr];
        key[sr..2 * sr].copy_from_slice(&tone(sr, 0.5));
        let duck = Ducking::default();
        let g = duck_gains(&[key], sr as u32, &duck);
        let db = |x: f32| 20.0 * x.log10();
        assert!(db(g[sr / 2]).abs() < 0.01, "before: {}", db(g[sr / 2]));
        assert!((db(g[sr + sr / 2]) + 12.0).abs() < 0.1, "during");
        // 200 ms hold, then back up within the release time
        assert!(db(g[2 * sr + sr / 10]) < -11.0, "held");
        assert!(db(g[3 * sr - 1]) > -1.5, "released: {}", db(g[3 * sr - 1]));
        // a key that is silent throughout ducks nothing
        let g = duck_gains(&[vec![0.0; sr]], sr as u32, &duck);
        assert!(g.iter().all(|x| *x == 1.0));
    }

    #[test]
    fn music_replaces_the_span_and_hands_over_at_its_edges() {
        let n = 1000;
        let music = vec![vec![0.5f32; n]; 2];
        let replace = Under::Replaced {
            handover_samples: 50,
        };
        let mut mix = vec![vec![1.0f32; 3 * n]; 2];
        lay_over(&mut mix, &music, (n, 2 * n), &replace, 8000);
        assert_eq!(mix[0][n / 2], 1.0, "before the span: the sound");
        assert_eq!(mix[0][n + n / 2], 0.5, "inside: the music alone");
        assert_eq!(mix[1][2 * n + n / 2], 1.0, "after: the sound");
        assert!(
            mix[0][n] > 1.4,
            "the sound fades out over the first samples"
        );
        assert!(mix[0][2 * n - 1] > 1.4, "and back in over the last");
        // a span from the very start has no edge to hand over at
        let mut mix = vec![vec![1.0f32; 2 * n]; 2];
        lay_over(&mut mix, &music, (0, n), &replace, 8000);
        assert_eq!(mix[0][0], 0.5);
        let kept = Under::Kept {
            gain_db: -6.0206,
            duck: None,
        };
        let mut mix = vec![vec![1.0f32; 3 * n]; 2];
        lay_over(&mut mix, &music[..1], (n, 2 * n), &kept, 8000);
        assert!(
            (mix[1][n + n / 2] - 1.0).abs() < 1e-3,
            "half the sound plus mono music"
        );
    }

    #[test]
    fn the_limiter_holds_every_sample_under_the_ceiling() {
        let mut x = tone(20000, 0.3);
        for (i, s) in x.iter_mut().enumerate().skip(5000).take(300) {
            *s = if i % 2 == 0 { 1.6 } else { -1.4 };
        }
        x[15000] = 3.0;
        x[3] = -2.0; // before a whole look-ahead window has passed
        let mut ch = vec![x.clone(), tone(20000, 0.2)];
        let g = limiter_gains(&ch, 0.9, 64, 800);
        apply_gains(&mut ch, &g);
        let peak = ch.iter().flatten().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak <= 0.9 + 1e-6, "{peak}");
        // far from the peaks nothing changes; the gain moves smoothly
        assert!((g[4500] - 1.0).abs() < 0.01, "{}", g[4500]);
        assert!((g[12000] - 1.0).abs() < 1e-3, "{}", g[12000]);
        let steepest = g
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0f32, f32::max);
        assert!(steepest < 0.05, "{steepest}");
    }
}
