//! ffmpeg and ffprobe as child processes, always with an argument list
//! (never a shell): probing a video, decoding its sound to samples, and
//! muxing new sound beside its video stream copied bit for bit.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// The Debian package that provides both programs.
pub const PACKAGE: &str = "ffmpeg";

/// The two programs, found once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// ffmpeg.
    pub ffmpeg: PathBuf,
    /// ffprobe.
    pub ffprobe: PathBuf,
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn find(program: &'static str, env: &str) -> Result<PathBuf> {
    if let Some(given) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        return if given.is_file() {
            Ok(given)
        } else {
            Err(Error::Tool {
                program,
                reason: format!("{env}={} is not a file", given.display()),
            })
        };
    }
    on_path(program).ok_or_else(|| Error::Tool {
        program,
        reason: format!(
            "not found on the PATH; install Debian's `{PACKAGE}` package (`apt-get install {PACKAGE}`, which tools/install-test-deps.sh runs) or name the program in {env}"
        ),
    })
}

impl Tools {
    /// Finds ffmpeg and ffprobe: `$RAGAFUSION_FFMPEG` and
    /// `$RAGAFUSION_FFPROBE` when set, else on the PATH.
    pub fn find() -> Result<Self> {
        Ok(Self {
            ffmpeg: find("ffmpeg", "RAGAFUSION_FFMPEG")?,
            ffprobe: find("ffprobe", "RAGAFUSION_FFPROBE")?,
        })
    }
}

/// A file name as ffmpeg reads it: the `file:` protocol, so that a name
/// that starts with `-` or holds a `:` is never taken for an option or
/// another protocol.
pub fn file_arg(path: &Path) -> OsString {
    let mut arg = OsString::from("file:");
    arg.push(path.as_os_str());
    arg
}

/// The last lines ffmpeg wrote on stderr, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

fn spawn_error(program: &'static str, e: std::io::Error) -> Error {
    Error::Tool {
        program,
        reason: format!("could not be started: {e}"),
    }
}

/// A video file's streams and length, as ffprobe reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Length of the video stream, seconds (the container's when the
    /// stream does not say).
    pub duration_s: f64,
    /// The video stream's codec (`h264`, `vp9`, ...).
    pub video_codec: String,
    /// Frames per second.
    pub frame_rate: f64,
    /// Whether the file has a sound track.
    pub has_audio: bool,
}

fn seconds(v: &serde_json::Value) -> Option<f64> {
    v.as_str()?.parse().ok().filter(|s: &f64| s.is_finite())
}

/// Matroska keeps a stream's length as a tag, `HH:MM:SS.fraction`.
fn clock_seconds(v: &serde_json::Value) -> Option<f64> {
    let mut total = 0.0;
    for part in v.as_str()?.split(':') {
        total = total * 60.0 + part.parse::<f64>().ok()?;
    }
    Some(total).filter(|t| t.is_finite())
}

fn rate(v: &serde_json::Value) -> Option<f64> {
    let (n, d) = v.as_str()?.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    Some(n / d).filter(|r| r.is_finite() && *r > 0.0)
}

/// Reads ffprobe's JSON for `path`.
fn read_probe(json: &serde_json::Value, path: &Path) -> Result<Probe> {
    let bad = |reason: String| Error::InvalidVideo {
        path: path.to_path_buf(),
        reason,
    };
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let is = |s: &serde_json::Value, kind: &str| s["codec_type"] == kind;
    let container_s = seconds(&json["format"]["duration"]).unwrap_or(0.0);
    if streams.is_empty() && container_s <= 0.0 {
        return Err(bad(
            "the video is 0 s long (an empty file, no streams)".into()
        ));
    }
    let video = streams
        .iter()
        .find(|s| is(s, "video") && s["disposition"]["attached_pic"] != 1)
        .ok_or_else(|| bad("no video stream (is it a sound file or a picture?)".into()))?;
    let duration_s = seconds(&video["duration"])
        .or_else(|| clock_seconds(&video["tags"]["DURATION"]))
        .unwrap_or(container_s);
    let frames = video["nb_frames"]
        .as_str()
        .and_then(|n| n.parse::<u64>().ok());
    if duration_s <= 0.0 || frames == Some(0) {
        return Err(bad("the video is 0 s long (no frames)".into()));
    }
    if duration_s > crate::limits::MAX_SECONDS {
        return Err(bad(format!(
            "{duration_s:.0} s is longer than the {} s a score may be",
            crate::limits::MAX_SECONDS
        )));
    }
    Ok(Probe {
        duration_s,
        video_codec: video["codec_name"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        frame_rate: rate(&video["avg_frame_rate"])
            .or_else(|| rate(&video["r_frame_rate"]))
            .unwrap_or(25.0),
        has_audio: streams.iter().any(|s| is(s, "audio")),
    })
}

impl Tools {
    /// Probes `path`: a file ffprobe cannot read, one with no video
    /// stream, one with no frames and one longer than an hour are refused,
    /// naming the file.
    pub fn probe(&self, path: &Path) -> Result<Probe> {
        if !path.is_file() {
            let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no such video file");
            return Err(Error::io(path, cause));
        }
        let out = Command::new(&self.ffprobe)
            .args([
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
            ])
            .arg(file_arg(path))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| spawn_error("ffprobe", e))?;
        if !out.status.success() {
            return Err(Error::InvalidVideo {
                path: path.to_path_buf(),
                reason: format!("not a video ffprobe can read: {}", tail(&out.stderr)),
            });
        }
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| Error::InvalidVideo {
                path: path.to_path_buf(),
                reason: format!("ffprobe's report is unreadable: {e}"),
            })?;
        read_probe(&json, path)
    }

    /// The first sound track of `path` from its start, as stereo `f32` at
    /// `sample_rate_hz`, exactly `samples` long (a shorter track is padded
    /// with silence, a longer one cut).
    pub fn decode_audio(
        &self,
        path: &Path,
        sample_rate_hz: u32,
        samples: usize,
    ) -> Result<[Vec<f32>; 2]> {
        let out = Command::new(&self.ffmpeg)
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(file_arg(path))
            .args(["-map", "0:a:0", "-vn", "-ac", "2", "-ar"])
            .arg(sample_rate_hz.to_string())
            .args(["-f", "f32le", "-c:a", "pcm_f32le", "pipe:1"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| spawn_error("ffmpeg", e))?;
        if !out.status.success() {
            return Err(Error::AudioDecode {
                path: path.to_path_buf(),
                reason: format!("ffmpeg cannot decode its sound: {}", tail(&out.stderr)),
            });
        }
        let mut channels = [vec![0f32; samples], vec![0f32; samples]];
        for (i, frame) in out.stdout.chunks_exact(8).take(samples).enumerate() {
            for (c, bytes) in frame.chunks_exact(4).enumerate() {
                let s = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                channels[c][i] = if s.is_finite() { s } else { 0.0 };
            }
        }
        Ok(channels)
    }
}

/// How a container is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container {
    /// ffmpeg's muxer name.
    pub muxer: &'static str,
    /// The sound codec and its bit rate.
    pub audio_codec: &'static str,
    /// Video codecs the container takes (`None`: any ffmpeg muxes).
    pub video_codecs: Option<&'static [&'static str]>,
}

/// The container an output file name asks for, by its extension.
pub fn container_for(out: &Path) -> Result<Container> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let (muxer, audio_codec, video_codecs) = match ext.as_str() {
        "mp4" | "m4v" => ("mp4", "aac", None),
        "mov" => ("mov", "aac", None),
        "mkv" => ("matroska", "aac", None),
        "webm" => ("webm", "libopus", Some(&["vp8", "vp9", "av1"][..])),
        _ => {
            return Err(Error::param(
                "out",
                format!(
                    "{}: write .mp4, .mov, .mkv or .webm (the extension picks the container)",
                    out.display()
                ),
            ))
        }
    };
    Ok(Container {
        muxer,
        audio_codec,
        video_codecs,
    })
}

impl Tools {
    /// Writes `out` (muxer `container`) with `video`'s first video stream
    /// copied packet for packet and the sound of the WAV file `sound`
    /// encoded for the container; reports seconds muxed to `progress` over
    /// `duration_s`. Write to a temporary name: `out` is written in place.
    pub fn mux(
        &self,
        video: &Path,
        sound: &Path,
        container: Container,
        out: &Path,
        duration_s: f64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut cmd = Command::new(&self.ffmpeg);
        cmd.args(["-v", "error", "-nostdin", "-y", "-i"])
            .arg(file_arg(video))
            .arg("-i")
            .arg(file_arg(sound))
            .args(["-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "0"])
            .args([
                "-c:v",
                "copy",
                "-c:a",
                container.audio_codec,
                "-b:a",
                "192k",
            ]);
        if container.muxer == "mp4" || container.muxer == "mov" {
            cmd.args(["-movflags", "+faststart"]);
        }
        cmd.args(["-progress", "pipe:1", "-nostats", "-f", container.muxer])
            .arg(file_arg(out))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error("ffmpeg", e))?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let errors = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let total = duration_s.ceil().max(1.0) as u64;
        progress.start(total, "muxing");
        let mut done = 0u64;
        let mut cancelled = false;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                let Some(us) = line.strip_prefix("out_time_us=") else {
                    continue;
                };
                let now = us
                    .trim()
                    .parse::<u64>()
                    .map_or(done, |us| (us / 1_000_000).min(total));
                if now > done {
                    if !progress.advance(now - done) {
                        cancelled = true;
                        let _ = child.kill();
                        break;
                    }
                    done = now;
                }
            }
        }
        let status = child.wait().map_err(|e| spawn_error("ffmpeg", e))?;
        let stderr = errors.join().unwrap_or_default();
        if cancelled {
            return Err(Error::Cancelled);
        }
        if !status.success() {
            return Err(Error::Tool {
                program: "ffmpeg",
                reason: format!(
                    "muxing {} with new sound into {} failed: {}",
                    video.display(),
                    out.display(),
                    tail(&stderr)
                ),
            });
        }
        if done < total {
            progress.advance(total - done);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probes_read_the_video_stream_first() {
        let p = Path::new("v.mkv");
        let mkv = json!({
            "streams": [
                {"codec_type": "audio", "codec_name": "opus"},
                {"codec_type": "video", "codec_name": "vp9", "avg_frame_rate": "30000/1001",
                 "tags": {"DURATION": "00:01:01.000000000"}}
            ],
            "format": {"duration": "61.020000"}
        });
        let probe = read_probe(&mkv, p).unwrap();
        assert_eq!(probe.duration_s, 61.0);
        assert!((probe.frame_rate - 29.97).abs() < 0.01);
        assert!(probe.has_audio);
        assert_eq!(probe.video_codec, "vp9");
        let mp4 = json!({
            "streams": [{"codec_type": "video", "codec_name": "h264", "duration": "7.000000",
                         "avg_frame_rate": "25/1", "nb_frames": "175"}],
            "format": {"duration": "7.1"}
        });
        let probe = read_probe(&mp4, p).unwrap();
        assert_eq!((probe.duration_s, probe.has_audio), (7.0, false));
    }

    #[test]
    fn probes_without_a_picture_or_frames_are_refused() {
        let p = Path::new("clip.m4a");
        let sound_with_cover = json!({
            "streams": [
                {"codec_type": "audio"},
                {"codec_type": "video", "disposition": {"attached_pic": 1}, "duration": "3"}
            ]
        });
        let e = read_probe(&sound_with_cover, p).unwrap_err().to_string();
        assert!(
            e.contains("clip.m4a") && e.contains("no video stream"),
            "{e}"
        );
        for empty in [
            json!({"streams": [{"codec_type": "video", "nb_frames": "0"}],
                   "format": {"duration": "0.0"}}),
            json!({"streams": [], "format": {"duration": "0.000000"}}),
        ] {
            let e = read_probe(&empty, p).unwrap_err().to_string();
            assert!(e.contains("0 s long"), "{e}");
        }
        let long = json!({"streams": [{"codec_type": "video", "duration": "90000"}]});
        assert!(read_probe(&long, p).is_err());
    }

    #[test]
    fn the_extension_picks_the_container() {
        assert_eq!(
            container_for(Path::new("a.MP4")).unwrap().audio_codec,
            "aac"
        );
        assert_eq!(container_for(Path::new("a.webm")).unwrap().muxer, "webm");
        let e = container_for(Path::new("a.avi")).unwrap_err().to_string();
        assert!(e.contains("out") && e.contains(".mp4"), "{e}");
    }

    #[test]
    fn names_go_to_ffmpeg_as_files() {
        assert_eq!(file_arg(Path::new("-i.mp4")), OsString::from("file:-i.mp4"));
    }
}
