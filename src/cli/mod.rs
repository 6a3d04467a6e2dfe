//! Command-line verbs. Each file holds one group's arguments and `run`.

mod analyze;
mod bench;
mod choice;
mod codec;
mod compare;
mod corpus;
mod export;
mod generate;
mod musicgen;
mod progress_bar;
mod raga;
mod score_video;
mod sd_args;
mod serve;
mod text_encoder;
mod train;
mod train_parts;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Carnatic music from text captions with spectrogram diffusion, and
/// measures of raga adherence.
#[derive(Debug, Parser)]
#[command(name = "ragafusion", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert audio (WAV, MP3, FLAC, OGG) to a riffusion spectrogram PNG;
    /// with a folder as IN, convert every audio file in it into OUT.
    AudioToImage(codec::AudioToImageArgs),
    /// Reconstruct audio from a spectrogram PNG (parameters from its EXIF);
    /// with a folder as IN, convert every PNG in it into OUT.
    ImageToAudio(codec::ImageToAudioArgs),
    /// Print the spectrogram parameters stored in a PNG's EXIF tags.
    PrintParams(codec::PrintParamsArgs),
    /// Cut clips (5.12 s by default) from a recording.
    SampleClips(codec::SampleClipsArgs),
    /// Render labelled synthetic Carnatic clips (WAV + JSON label).
    Synth(corpus::SynthArgs),
    /// Turn recordings + metadata into a captioned spectrogram dataset.
    Prepare(corpus::PrepareArgs),
    /// Train a raga classifier on labelled clips.
    TrainClassifier(raga::TrainClassifierArgs),
    /// Name the raga of an audio clip or spectrogram image (JSON output).
    Classify(raga::ClassifyArgs),
    /// Measure a classifier on labelled clips (accuracy, top-3, confusion
    /// matrix as CSV and PNG).
    Evaluate(raga::EvaluateArgs),
    /// Inspect a clip: a labelled figure (spectrogram, pitch over a swara
    /// grid, PCD, top ragas, loudness) and the same facts as text or JSON.
    Analyze(analyze::AnalyzeArgs),
    /// Make music from a text prompt with a Stable Diffusion checkpoint
    /// (WAV + spectrogram PNG + JSON sidecar) or a MusicGen checkpoint
    /// (`--backend musicgen`: WAV + JSON); `--seconds` for long form.
    Generate(generate::GenerateArgs),
    /// Re-generate an audio file towards a prompt (img2img on its
    /// spectrogram, clip by clip), optionally through a mask.
    AudioToAudio(generate::AudioToAudioArgs),
    /// Walk from one PROMPT:SEED to another in clips (interpolated text,
    /// spherically interpolated noise) and join them into one file.
    Interpolate(generate::InterpolateArgs),
    /// Time Stable Diffusion sampling (SD 1.5 architecture, random
    /// weights): seconds per step, VAE decode, peak memory.
    BenchSd(bench::BenchSdArgs),
    /// Time MusicGen generation (small / medium / large architecture,
    /// random weights): tokens per second, codec decode, real-time factor,
    /// peak memory.
    BenchMusicgen(bench::BenchMusicgenArgs),
    /// Fine-tune a Stable Diffusion UNet (full or LoRA, or from a named
    /// config) on captioned spectrograms, optionally with the raga
    /// auxiliary loss; checkpoints, resume, validation, export to OUT/final.
    Train(Box<train::TrainArgs>),
    /// Train the autoencoder on spectrograms (fine-tune a pipeline's VAE or
    /// train a fresh named config); writes the pipeline with the new VAE.
    TrainVae(train_parts::TrainVaeArgs),
    /// Learn a tokenizer from the caption vocabulary and train a fresh CLIP
    /// text encoder to read captions' fields (raga, segment, tala,
    /// instrument); writes the base pipeline with the new text side.
    TrainTextEncoder(text_encoder::TrainTextEncoderArgs),
    /// Train the latent raga classifier of the auxiliary loss on the VAE
    /// latents of a captioned dataset with raga labels.
    TrainLatentClassifier(train_parts::TrainLatentClassifierArgs),
    /// Write a pipeline folder from a training run's checkpoint (EMA
    /// weights, f32 or f16), optionally with the model's recommended
    /// settings and canonical tonic; works while the run goes on.
    ExportCheckpoint(export::ExportCheckpointArgs),
    /// Compare generators (diffusion checkpoints, MusicGen, reference
    /// clips) over prompts and seeds: raga adherence, both classifiers,
    /// Frechet distances, speed and memory, as CSV, JSON and an offline
    /// HTML report.
    Compare(compare::CompareArgs),
    /// Score a video: Carnatic music made for its length (or a section),
    /// faded, optionally over its own sound (ducked), brought to a
    /// loudness target (-14 LUFS, -1 dBTP) and muxed with the picture
    /// copied bit for bit (needs ffmpeg; docs/video.md).
    ScoreVideo(score_video::ScoreVideoArgs),
    /// Serve the web studio: generate, listen, inspect and compare in a
    /// browser, over a JSON API (docs/server.md).
    Serve(serve::ServeArgs),
}

/// Refuses NaN and infinite values of the chosen verb's number flags: no
/// setting means "not a number" (and a NaN would vanish as JSON null on
/// its way to the job).
fn refuse_non_finite(cmd: &mut clap::Command, m: &clap::ArgMatches) -> clap::error::Result<()> {
    let Some((name, sub)) = m.subcommand() else {
        return Ok(());
    };
    let verb = cmd.find_subcommand_mut(name).expect("a parsed verb exists");
    let bad = verb.get_arguments().find_map(|arg| {
        let id = arg.get_id().as_str();
        (arg.get_value_parser().type_id() == std::any::TypeId::of::<f64>()).then_some(())?;
        let v = sub.get_many::<f64>(id)?.copied().find(|v| !v.is_finite())?;
        Some(format!(
            "--{}: {v} is not a finite number",
            arg.get_long().unwrap_or(id)
        ))
    });
    bad.map_or(Ok(()), |msg| {
        Err(verb.error(clap::error::ErrorKind::InvalidValue, msg))
    })
}

/// Parses the command line and runs the chosen verb.
pub fn run() -> anyhow::Result<ExitCode> {
    // Negative numbers (`--guidance -1`, `--tonic -3`) are values, so the
    // range checks can name the flag, not unknown flags.
    let mut command = Cli::command().mut_subcommands(|c| c.allow_negative_numbers(true));
    let matches = command.get_matches_mut();
    refuse_non_finite(&mut command, &matches).unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::AudioToImage(a) => codec::audio_to_image(a),
        Command::ImageToAudio(a) => codec::image_to_audio(a),
        Command::PrintParams(a) => codec::print_params(a),
        Command::SampleClips(a) => codec::sample_clips(a),
        Command::Synth(a) => corpus::synth(a),
        Command::Prepare(a) => corpus::prepare(a),
        Command::TrainClassifier(a) => raga::train_classifier(a),
        Command::Classify(a) => raga::classify(a),
        Command::Evaluate(a) => raga::evaluate(a),
        Command::Analyze(a) => analyze::analyze(a),
        Command::Generate(a) => generate::generate(a),
        Command::AudioToAudio(a) => generate::audio_to_audio(a),
        Command::Interpolate(a) => generate::interpolate(a),
        Command::BenchSd(a) => bench::bench_sd(a),
        Command::BenchMusicgen(a) => bench::bench_musicgen(a),
        Command::Train(a) => train::train(*a),
        Command::TrainVae(a) => train_parts::train_vae(a),
        Command::TrainTextEncoder(a) => text_encoder::train_text_encoder(a),
        Command::TrainLatentClassifier(a) => train_parts::train_latent_classifier(a),
        Command::ExportCheckpoint(a) => export::export_checkpoint_cmd(a),
        Command::Compare(a) => compare::compare(a),
        Command::ScoreVideo(a) => score_video::score_video(a),
        Command::Serve(a) => serve::serve(a),
    }
}
