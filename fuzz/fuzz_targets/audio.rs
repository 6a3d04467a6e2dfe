#![no_main]
//! Audio files as ragafusion reads them: the whole-file decoder (hound for
//! PCM and float WAV, symphonia for MP3, FLAC, OGG and other WAV codecs),
//! the resampler every verb applies next, and the streaming reader of
//! `prepare`. The first byte picks the file extension (a format hint).

use std::io::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ragafusion::audio::stream::AudioStream;
use ragafusion::audio::{decode_audio, resample};

const EXTENSIONS: [&str; 4] = ["wav", "mp3", "flac", "ogg"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[pick as usize % EXTENSIONS.len()];
    let name = format!("input.{ext}");
    if let Ok(audio) = decode_audio(bytes.to_vec(), Path::new(&name)) {
        let _ = resample(&audio, 22_050);
    }
    let mut file = tempfile::Builder::new()
        .suffix(&format!(".{ext}"))
        .tempfile()
        .expect("temporary file");
    file.write_all(bytes).expect("temporary file");
    if let Ok(mut stream) = AudioStream::open(file.path()) {
        while let Ok(Some(_)) = stream.next_mono() {}
    }
});
