//! Scoring a video: music generated for its length (or a section of it),
//! ended at a quiet moment and faded, mixed with or without the video's
//! own sound, brought to a loudness target under a true-peak ceiling, and
//! muxed beside the video stream copied bit for bit.
//!
//! The music is kept in a work folder under a name that follows the music
//! request and the model, so a rerun (after an interruption, or with other
//! mixing settings) reuses it instead of generating it again.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::request::GenerateRequest;
use super::{defaults, resume, Backend, Engine};
use crate::audio::mix::{apply_fades, lay_over, quiet_cut, Ducking, Under};
use crate::audio::r128::{self, Levelled, Measured};
use crate::audio::{read_audio, resample, write_wav, Audio, ChannelLayout, WavFormat};
use crate::error::{Error, Result};
use crate::fsutil::{create_dir, io_at, refuse_overwriting, temp_path, write_json_atomic};
use crate::progress::Progress;
use crate::video::{container_for, Container, Probe, Tools};

/// Sample rate of the mixed sound, Hz (video's own).
pub const MIX_RATE_HZ: u32 = 48_000;
/// Music generated past the section's end, seconds, so the cut can fall
/// at a quiet moment rather than where the generation stopped.
pub const EXTRA_S: f64 = 1.5;
/// The music ends at the quietest moment of this last stretch of the
/// section, seconds.
pub const CUT_WINDOW_S: f64 = 1.0;
/// Shortest section scored, seconds.
pub const MIN_SECTION_S: f64 = 1.0;
/// Crossfade where the video's own sound gives way to the music, seconds.
const HANDOVER_S: f64 = 0.05;
/// Retries when the encoded sound's true peak passes the ceiling.
const ENCODE_TRIES: usize = 3;

/// What to do with the video's own sound inside the scored section
/// (outside it the sound is always kept as it is).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OriginalSound {
    /// Keep it under the music (else the music replaces it).
    pub keep: bool,
    /// Its gain when kept, dB.
    pub gain_db: f64,
    /// Lower the music where it is active (speech), by [`Ducking`]'s
    /// default depth.
    pub duck: bool,
}

/// A video to score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreVideoRequest {
    /// The video (mp4, mov, mkv, webm; any ffmpeg reads).
    pub video: PathBuf,
    /// The music to make: caption, seed and generation settings. Its
    /// `seconds` and `name` are set from the section.
    pub music: GenerateRequest,
    /// Integrated loudness of the result, LUFS.
    pub loudness_lufs: f64,
    /// Fade-in of the music, seconds.
    pub fade_in_s: f64,
    /// Fade-out of the music, seconds.
    pub fade_out_s: f64,
    /// The video's own sound.
    pub original: OriginalSound,
    /// Start of the scored section, seconds (default the start).
    pub start_s: Option<f64>,
    /// End of the scored section, seconds (default the end).
    pub end_s: Option<f64>,
}

impl ScoreVideoRequest {
    /// A request with the defaults: -14 LUFS, 2 s in, 3 s out, the
    /// original sound replaced over the whole video.
    pub fn new(video: impl Into<PathBuf>, music: GenerateRequest) -> Self {
        Self {
            video: video.into(),
            music,
            loudness_lufs: r128::WEB_LUFS,
            fade_in_s: defaults::FADE_IN_S,
            fade_out_s: defaults::FADE_OUT_S,
            original: OriginalSound {
                keep: false,
                gain_db: 0.0,
                duck: false,
            },
            start_s: None,
            end_s: None,
        }
    }

    /// Checks the fields that need neither the video nor the model, for
    /// `backend`; errors name the field.
    pub fn check(&self, backend: Backend) -> Result<()> {
        self.music.check(backend)?;
        if !r128::TARGET_LUFS.contains(&self.loudness_lufs) {
            return Err(Error::param(
                "loudness",
                format!(
                    "{} LUFS: choose from {} to {} LUFS (-14 for web video, -23 for EBU R128 broadcast)",
                    self.loudness_lufs,
                    r128::TARGET_LUFS.start(),
                    r128::TARGET_LUFS.end()
                ),
            ));
        }
        let fades = [(self.fade_in_s, "fade-in"), (self.fade_out_s, "fade-out")];
        for (s, field) in fades {
            crate::limits::in_range(field, s, &(0.0..=60.0), " s")?;
        }
        crate::limits::in_range(
            "original-gain",
            self.original.gain_db,
            &(-60.0..=20.0),
            " dB",
        )?;
        let o = &self.original;
        if !o.keep && (o.duck || o.gain_db != 0.0) {
            let field = if o.duck { "duck" } else { "original-gain" };
            return Err(Error::param(field, "needs --keep-original"));
        }
        for (s, field) in [(self.start_s, "start"), (self.end_s, "end")] {
            if let Some(s) = s {
                crate::limits::in_range(field, s, &(0.0..=crate::limits::MAX_SECONDS), " s")?;
            }
        }
        if let (Some(a), Some(b)) = (self.start_s, self.end_s) {
            if b - a < MIN_SECTION_S {
                return Err(Error::param(
                    "end",
                    format!("{b} s is not {MIN_SECTION_S} s after --start {a} s"),
                ));
            }
        }
        Ok(())
    }

    /// The scored section of a video `duration_s` long, seconds.
    fn section(&self, duration_s: f64) -> Result<(f64, f64)> {
        let start = self.start_s.unwrap_or(0.0);
        let end = self.end_s.unwrap_or(duration_s);
        let long = format!("the video is {duration_s:.3} s long");
        if end > duration_s + 1e-6 {
            return Err(Error::param("end", format!("{end} s: {long}")));
        }
        if end - start < MIN_SECTION_S {
            return Err(Error::param(
                "start",
                format!("{start} s leaves less than {MIN_SECTION_S} s to score: {long}"),
            ));
        }
        Ok((start, end.min(duration_s)))
    }
}

/// What [`score_video`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The scored video.
    pub out: PathBuf,
    /// The music, in the work folder.
    pub music_wav: PathBuf,
    /// Whether the music was made by an earlier run.
    pub reused_music: bool,
    /// The video as probed.
    pub probe: Probe,
    /// The scored section, seconds.
    pub section_s: (f64, f64),
    /// Where the music ends, seconds into the video.
    pub music_end_s: f64,
    /// Loudness before and after levelling the mix.
    pub levelled: Levelled,
    /// Loudness of the sound as encoded in `out`.
    pub encoded: Measured,
}

/// The work folder's name for a music request: the fingerprint of the
/// request and the model.
fn music_name(engine: &Engine, music: &GenerateRequest) -> Result<String> {
    let unnamed = GenerateRequest {
        name: None,
        ..music.clone()
    };
    Ok(format!(
        "music-{}",
        resume::fingerprint(&unnamed, &engine.model_record()?)?
    ))
}

/// Makes the music, or finds it in `work_dir` from an earlier run.
fn music(
    engine: &Engine,
    music: GenerateRequest,
    work_dir: &Path,
    progress: &dyn Progress,
) -> Result<(PathBuf, bool)> {
    let name = music_name(engine, &music)?;
    let wav = work_dir.join(format!("{name}.wav"));
    let sidecar = work_dir.join(format!("{name}.json"));
    if wav.is_file() && sidecar.is_file() {
        progress.message(&format!(
            "reusing the music made earlier: {}",
            wav.display()
        ));
        return Ok((wav, true));
    }
    let request = GenerateRequest {
        name: Some(name),
        ..music
    };
    let made = engine.generate_into(
        &request,
        work_dir,
        defaults::CHECKPOINT_EVERY_S,
        progress,
        &mut |_| {},
    )?;
    let first = made.into_iter().next().ok_or_else(|| Error::Numeric {
        context: "score-video".into(),
        reason: "the model made no music".into(),
    })?;
    Ok((first, false))
}

/// The music in `wav` fitted to a stretch `span` samples long at
/// [`MIX_RATE_HZ`]: stereo, ended at the quietest moment of the stretch's
/// last [`CUT_WINDOW_S`], faded in and out.
fn fit(wav: &Path, span: usize, request: &ScoreVideoRequest) -> Result<Vec<Vec<f32>>> {
    let music = read_audio(wav)?;
    let music = resample(&music.with_layout(ChannelLayout::Stereo), MIX_RATE_HZ)?;
    let rate = MIX_RATE_HZ as f64;
    let latest = span.min(music.len_samples());
    let window = (CUT_WINDOW_S * rate) as usize;
    let frame = MIX_RATE_HZ as usize / 50;
    let cut = quiet_cut(
        &music.channels,
        latest.saturating_sub(window),
        latest,
        frame,
    );
    let mut channels = music.channels;
    channels.iter_mut().for_each(|c| c.truncate(cut));
    let fade = |s: f64| ((s * rate) as usize).min(cut / 2);
    apply_fades(
        &mut channels,
        fade(request.fade_in_s),
        fade(request.fade_out_s),
    );
    Ok(channels)
}

/// Fails unless a file can be created beside `out` (before the long work).
fn check_writable(out: &Path) -> Result<()> {
    let dir = match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    create_dir(&dir)?;
    let probe = dir.join(format!(".ragafusion-write-check.{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        Error::io(
            out,
            std::io::Error::new(e.kind(), format!("cannot write the output here: {e}")),
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// A request checked against its video, its tools and its output, ready
/// to run: everything [`score_video`] can refuse without the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The request.
    pub request: ScoreVideoRequest,
    /// The scored video to write.
    pub out: PathBuf,
    /// The folder that keeps the music.
    pub work_dir: PathBuf,
    /// The video as probed.
    pub probe: Probe,
    /// The scored section, seconds.
    pub section_s: (f64, f64),
    tools: Tools,
    container: Container,
}

/// Checks `request` for `backend` and scoring into `out` (mp4, mov, mkv
/// or webm, by its extension) with the music kept in `work_dir`: fails
/// when ffmpeg is missing, the video is unreadable, has no picture or no
/// frames, the section does not fit it, the container cannot hold its
/// video, or `out` is the video. Nothing is written.
pub fn plan(
    request: &ScoreVideoRequest,
    backend: Backend,
    out: &Path,
    work_dir: &Path,
) -> Result<Plan> {
    request.check(backend)?;
    let tools = Tools::find()?;
    let container = container_for(out)?;
    refuse_overwriting(out, &[request.video.as_path()])?;
    let probe = tools.probe(&request.video)?;
    if let Some(codecs) = container.video_codecs {
        if !codecs.contains(&probe.video_codec.as_str()) {
            return Err(Error::param(
                "out",
                format!(
                    "{}: this container holds {} video, and {} is {}; write .mp4 or .mkv",
                    out.display(),
                    codecs.join(" / "),
                    request.video.display(),
                    probe.video_codec
                ),
            ));
        }
    }
    let section_s = request.section(probe.duration_s)?;
    Ok(Plan {
        request: request.clone(),
        out: out.to_path_buf(),
        work_dir: work_dir.to_path_buf(),
        probe,
        section_s,
        tools,
        container,
    })
}

/// Runs a [`plan`] on `engine` (whose backend it was planned for): checks
/// that `out` can be written, makes or reuses the music, mixes, levels,
/// muxes to a temporary name and renames it to the plan's `out`, which
/// never replaces the video.
pub fn score_video(engine: &Engine, plan: &Plan, progress: &dyn Progress) -> Result<Scored> {
    let Plan {
        request,
        out,
        work_dir,
        probe,
        section_s: (start_s, end_s),
        tools,
        container,
    } = plan;
    let (start_s, end_s, container) = (*start_s, *end_s, *container);
    let (out, work_dir) = (out.as_path(), work_dir.as_path());
    check_writable(out)?;
    if request.original.keep && !probe.has_audio {
        progress.message(&format!(
            "{} has no sound: there is no original to keep",
            request.video.display()
        ));
    }

    let section_s = end_s - start_s;
    let wanted = GenerateRequest {
        seconds: Some((section_s + EXTRA_S).min(crate::limits::MAX_SECONDS)),
        ..request.music.clone()
    };
    let (music_wav, reused_music) = music(engine, wanted, work_dir, progress)?;

    progress.start(2, "mixing");
    let rate = MIX_RATE_HZ as f64;
    let total = (probe.duration_s * rate).round() as usize;
    let (start, end) = (
        (start_s * rate).round() as usize,
        ((end_s * rate).round() as usize).min(total),
    );
    let channels = fit(&music_wav, end - start, request)?;
    let cut = channels[0].len();
    if !progress.advance(1) {
        return Err(Error::Cancelled);
    }
    let scored_sound = request.original.keep || start > 0 || end < total;
    let mut mix = if probe.has_audio && scored_sound {
        tools.decode_audio(&request.video, MIX_RATE_HZ, total)?
    } else {
        [vec![0f32; total], vec![0f32; total]]
    };
    let o = &request.original;
    let under = if o.keep {
        Under::Kept {
            gain_db: o.gain_db,
            duck: o.duck.then(Ducking::default),
        }
    } else {
        Under::Replaced {
            handover_samples: (HANDOVER_S * rate) as usize,
        }
    };
    lay_over(&mut mix, &channels, (start, end), &under, MIX_RATE_HZ);
    if !progress.advance(1) {
        return Err(Error::Cancelled);
    }

    create_dir(work_dir)?;
    let context = format!("the sound for {}", out.display());
    let tmp = temp_path(out);
    let mix_wav = work_dir.join(format!(".mix.{}.wav", std::process::id()));
    let result = (|| {
        let mut ceiling = r128::CEILING_DBTP;
        for _ in 0..ENCODE_TRIES {
            let (levelled_mix, levelled) =
                r128::to_target(&mix, MIX_RATE_HZ, request.loudness_lufs, ceiling, &context)?;
            let audio = Audio::new(levelled_mix, MIX_RATE_HZ, &context)?;
            write_wav(&mix_wav, &audio, WavFormat::Float32)?;
            tools.mux(
                &request.video,
                &mix_wav,
                container,
                &tmp,
                probe.duration_s,
                progress,
            )?;
            // lossy codecs move peaks: measure what was written
            let decoded = tools.decode_audio(&tmp, MIX_RATE_HZ, total)?;
            let encoded = r128::measure(&decoded, MIX_RATE_HZ, &context)?;
            if encoded.true_peak_dbtp <= r128::CEILING_DBTP {
                return Ok((levelled, encoded));
            }
            ceiling -= encoded.true_peak_dbtp - r128::CEILING_DBTP + 0.1;
        }
        Err(Error::Numeric {
            context: context.clone(),
            reason: format!(
                "the encoder kept pushing the true peak over {} dBTP",
                r128::CEILING_DBTP
            ),
        })
    })();
    let _ = std::fs::remove_file(&mix_wav);
    let (levelled, encoded) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out).map_err(io_at(out))?;
    let scored = Scored {
        out: out.to_path_buf(),
        music_wav,
        reused_music,
        probe: probe.clone(),
        section_s: (start_s, end_s),
        music_end_s: start_s + cut as f64 / rate,
        levelled,
        encoded,
    };
    write_json_atomic(&sidecar_path(out, work_dir), &scored.sidecar(request))?;
    Ok(scored)
}

/// Where the facts of scoring into `out` are written: `work_dir/NAME.json`.
pub fn sidecar_path(out: &Path, work_dir: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    work_dir.join(format!("{name}.json"))
}

impl Scored {
    /// The facts, for the sidecar and for front ends.
    pub fn sidecar(&self, request: &ScoreVideoRequest) -> serde_json::Value {
        json!({
            "kind": "score-video",
            "video": request.video.display().to_string(),
            "out": self.out.display().to_string(),
            "prompt": request.music.prompt,
            "seed": request.music.seed,
            "music_wav": self.music_wav.display().to_string(),
            "reused_music": self.reused_music,
            "video_duration_s": self.probe.duration_s,
            "video_codec": self.probe.video_codec,
            "frame_rate": self.probe.frame_rate,
            "section_s": [self.section_s.0, self.section_s.1],
            "music_end_s": self.music_end_s,
            "fade_in_s": request.fade_in_s,
            "fade_out_s": request.fade_out_s,
            "original": {
                "had_sound": self.probe.has_audio,
                "keep": request.original.keep,
                "gain_db": request.original.gain_db,
                "duck": request.original.duck,
            },
            "loudness": {
                "target_lufs": request.loudness_lufs,
                "ceiling_dbtp": r128::CEILING_DBTP,
                "mix": self.levelled,
                "encoded": self.encoded,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ScoreVideoRequest {
        ScoreVideoRequest::new("v.mp4", GenerateRequest::new("kalyani", 1))
    }

    #[test]
    fn sections_and_settings_are_checked_naming_the_flag() {
        let r = request();
        assert_eq!(r.section(7.0).unwrap(), (0.0, 7.0));
        let part = ScoreVideoRequest {
            start_s: Some(2.0),
            end_s: Some(5.0),
            ..request()
        };
        assert_eq!(part.section(7.0).unwrap(), (2.0, 5.0));
        let e = part.section(4.0).unwrap_err().to_string();
        assert!(e.contains("`end`") && e.contains("4.000 s long"), "{e}");
        let late = ScoreVideoRequest {
            start_s: Some(6.5),
            ..request()
        };
        assert!(late
            .section(7.0)
            .unwrap_err()
            .to_string()
            .contains("`start`"));
        let cases = [
            (
                ScoreVideoRequest {
                    loudness_lufs: 0.0,
                    ..request()
                },
                "loudness",
            ),
            (
                ScoreVideoRequest {
                    fade_in_s: -1.0,
                    ..request()
                },
                "fade-in",
            ),
            (
                ScoreVideoRequest {
                    original: OriginalSound {
                        keep: false,
                        gain_db: 0.0,
                        duck: true,
                    },
                    ..request()
                },
                "duck",
            ),
            (
                ScoreVideoRequest {
                    start_s: Some(3.0),
                    end_s: Some(3.5),
                    ..request()
                },
                "end",
            ),
        ];
        for (r, field) in cases {
            let e = r.check(Backend::Diffusion).unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
        }
    }
}
