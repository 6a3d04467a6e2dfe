#!/usr/bin/env python3
"""Tiny random MusicGen checkpoints + transformers reference outputs.

Builds two MusicgenForConditionalGeneration models of the real architecture
(T5 encoder, enc_to_dec_proj, MusicGen decoder, EnCodec with the 32 kHz
geometry: upsampling ratios [8, 5, 4, 4], 50 Hz frames, reflect padding,
weight norm, 2 LSTM layers) with tiny random weights, and saves them with
save_pretrained, the way facebook/musicgen-* checkpoints are laid out:

  OUT/musicgen-tiny/          mono, 4 codebooks: config.json,
                              generation_config.json, model.safetensors,
                              tokenizer.json (a T5-style unigram tokenizer
                              trained on caption-like text: <pad> 0, </s> 1,
                              <unk> 2, "$A </s>")
  OUT/musicgen-tiny-stereo/   stereo, 8 interleaved codebooks (L1 R1 L2 R2
                              ...), the same text encoder and EnCodec
  OUT/musicgen-tiny-reference.safetensors
                              what transformers computes with them

The decoder's and codebooks' weights are drawn wider than transformers'
default init so that greedy decoding has clear winners: the script checks
that every greedy step's best logit leads the runner-up by more than
MIN_MARGIN, so a bit-level difference between implementations cannot flip a
token.

Reference tensors (f32 unless noted; "i64" token tensors):
  text.ids / text.mask (i64 [2, T])     PROMPTS, padded to the longer one
  text.hidden                           T5 last hidden state [2, T, 32]
  text.memory                           after enc_to_dec_proj and the mask
  decoder.ids (i64 [2*4, S])            fixed decoder tokens (some = pad)
  decoder.logits                        [2*4, S, vocab] for text.memory
  codec.codes (i64 [1, 4, F])           codes to decode
  codec.audio                           EnCodec decode [1, 1, F*640]
  codec.input / codec.input_codes       an input signal and its encode
  gen.g1 / gen.g3 (i64 [1, 4, F])       greedy codes of PROMPTS[0],
                                        guidance 1 and 3, NEW_TOKENS steps
  gen.g3.audio                          the decoded audio of gen.g3
  gen.uncond (i64)                      greedy, zero text memory, guidance 1
  gen.cont.input                        the audio prompt [1, 1, N]
  gen.cont (i64)                        greedy continuation of it with
                                        PROMPTS[0], guidance 3 (output
                                        includes the prompt's codes)
  stereo.g3 (i64 [1, 8, F])             greedy codes of the stereo model
  stereo.g3.audio                       its decoded audio [1, 2, F*640]

Usage (versions pinned in tools/requirements-musicgen.txt):
  python tools/make_musicgen_fixtures.py --out tests/data
"""
import argparse
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (EncodecConfig, MusicgenConfig, MusicgenDecoderConfig,
                          MusicgenForConditionalGeneration, T5Config)

PROMPTS = [
    "kalyani raga, adi tala, alapana",
    "a slow mohanam kriti by tyagaraja with violin and mridangam",
]
NEW_TOKENS = 24
CONT_TOKENS = 12
MIN_MARGIN = 1e-3
CODEBOOK_SIZE = 64

CORPUS = [
    "kalyani raga, adi tala, alapana, sung by a female vocalist",
    "a slow mohanam kriti by tyagaraja with violin and mridangam",
    "shankarabharanam raga, rupaka tala, kalpanaswaram on the veena",
    "hindolam raga, misra chapu tala, a tillana on the flute",
    "todi raga alapana by a male vocalist with tambura drone",
    "a fast varnam in kharaharapriya, adi tala, with ghatam",
    "bhairavi raga, khanda chapu tala, neraval, muthuswami dikshitar",
    "thodi, sankarabharanam, kambhoji, begada, sahana, anandabhairavi",
    "music, song, melody, rhythm, tempo, bright, calm, devotional",
]


def make_tokenizer():
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=160, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("</s>") == 1
    return tok


def make_config(vocab, stereo):
    text = T5Config(
        vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="relu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
    )
    audio = EncodecConfig(
        sampling_rate=32000, audio_channels=1, num_filters=2, hidden_size=8,
        codebook_size=CODEBOOK_SIZE, codebook_dim=8, upsampling_ratios=[8, 5, 4, 4],
        # 1000 * 1.2 // (50 Hz * 6 bits) = 4 quantizers
        target_bandwidths=[1.2], num_lstm_layers=2, num_residual_layers=1,
        compress=2, kernel_size=7, last_kernel_size=7, residual_kernel_size=3,
        dilation_growth_rate=2, norm_type="weight_norm", pad_mode="reflect",
        use_causal_conv=False, use_conv_shortcut=False, normalize=False,
        chunk_length_s=None, overlap=None, trim_right_ratio=1.0,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=CODEBOOK_SIZE, max_position_embeddings=256, num_hidden_layers=2,
        ffn_dim=96, num_attention_heads=4, hidden_size=48, dropout=0.0,
        activation_function="gelu", num_codebooks=8 if stereo else 4,
        audio_channels=2 if stereo else 1, pad_token_id=CODEBOOK_SIZE,
        bos_token_id=CODEBOOK_SIZE, decoder_start_token_id=CODEBOOK_SIZE,
    )
    return MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)


def widen(model, gen):
    """Redraws the decoder and the codebooks with larger weights."""
    with torch.no_grad():
        for name, p in model.decoder.named_parameters():
            if "layer_norm" in name:
                continue
            fan_in = p.shape[-1]
            gain = 12.0 if "lm_heads" in name else 1.5
            p.copy_(torch.randn(p.shape, generator=gen) * (gain / fan_in ** 0.5))
        for layer in model.audio_encoder.quantizer.layers:
            cb = layer.codebook
            cb.embed.copy_(torch.randn(cb.embed.shape, generator=gen))
            cb.embed_avg.copy_(cb.embed)


class Capture:
    """Records the codes MusicGen hands to EnCodec at the end of generate."""

    def __init__(self, model):
        self.codes = []
        self.inner = model.audio_encoder.decode
        model.audio_encoder.decode = self

    def __call__(self, codes, audio_scales=None, **kw):
        self.codes.append(codes[0].clone())
        return self.inner(codes, audio_scales=audio_scales, **kw)


class Margin(transformers.LogitsProcessor):
    """Tracks the smallest best-vs-runner-up gap of the (guided) logits."""

    def __init__(self):
        self.smallest = float("inf")

    def __call__(self, input_ids, scores):
        top = scores.topk(2, dim=-1).values
        self.smallest = min(self.smallest, (top[:, 0] - top[:, 1]).min().item())
        return scores


def greedy(model, capture, guidance, margins, **inputs):
    m = Margin()
    out = model.generate(**inputs, do_sample=False, guidance_scale=guidance,
                         logits_processor=transformers.LogitsProcessorList([m]))
    margins.append(m.smallest)
    if model.decoder.config.audio_channels == 1:
        return capture.codes[-1], out
    # stereo: EnCodec decoded the left then the right codebooks; re-interleave
    left, right = capture.codes[-2], capture.codes[-1]
    both = torch.stack([left, right], dim=2)  # [1, 4, 2, F]
    return both.reshape(left.shape[0], 2 * left.shape[1], left.shape[2]), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(7)
    tok = make_tokenizer()
    ref = {}
    margins = []

    enc = [tok.encode(p).ids for p in PROMPTS]
    t = max(len(e) for e in enc)
    ids = torch.tensor([e + [0] * (t - len(e)) for e in enc], dtype=torch.long)
    mask = torch.tensor([[1] * len(e) + [0] * (t - len(e)) for e in enc], dtype=torch.long)
    ref["text.ids"], ref["text.mask"] = ids, mask

    mono = None
    for stereo in (False, True):
        torch.manual_seed(1)
        model = MusicgenForConditionalGeneration(make_config(tok.get_vocab_size(), stereo)).eval()
        widen(model, gen)
        if stereo:
            # the same text encoder and codec as the mono model
            model.text_encoder.load_state_dict(mono.text_encoder.state_dict())
            model.audio_encoder.load_state_dict(mono.audio_encoder.state_dict())
        name = "musicgen-tiny-stereo" if stereo else "musicgen-tiny"
        folder = os.path.join(args.out, name)
        model.save_pretrained(folder, safe_serialization=True)
        tok.save(os.path.join(folder, "tokenizer.json"))
        capture = Capture(model)
        with torch.no_grad():
            if not stereo:
                mono = model
                hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                ref["text.hidden"] = hidden
                memory = model.enc_to_dec_proj(hidden) * mask[..., None]
                ref["text.memory"] = memory
                s = 9
                dec_ids = torch.randint(0, CODEBOOK_SIZE, (2 * 4, s), generator=gen)
                dec_ids[:, 0] = CODEBOOK_SIZE
                dec_ids[3, 1:4] = CODEBOOK_SIZE
                ref["decoder.ids"] = dec_ids
                ref["decoder.logits"] = model.decoder(
                    input_ids=dec_ids, encoder_hidden_states=memory,
                    encoder_attention_mask=mask).logits
                frames = 7
                codes = torch.randint(0, CODEBOOK_SIZE, (1, 4, frames), generator=gen)
                ref["codec.codes"] = codes
                ref["codec.audio"] = model.audio_encoder.decode(codes[None], [None]).audio_values
                n = 32000 // 50 * 6 + 123  # not a whole number of frames
                x = 0.3 * torch.sin(torch.arange(n) * 0.05) + 0.05 * torch.randn(n, generator=gen)
                x = x.reshape(1, 1, n)
                ref["codec.input"] = x
                ref["codec.input_codes"] = model.audio_encoder.encode(x).audio_codes[0]

                one = dict(input_ids=ids[:1], attention_mask=mask[:1], max_new_tokens=NEW_TOKENS)
                ref["gen.g1"], _ = greedy(model, capture, 1.0, margins, **one)
                ref["gen.g3"], audio = greedy(model, capture, 3.0, margins, **one)
                ref["gen.g3.audio"] = audio
                uncond = model.get_unconditional_inputs(1)
                ref["gen.uncond"], _ = greedy(
                    model, capture, 1.0, margins, encoder_outputs=uncond.encoder_outputs,
                    attention_mask=uncond.attention_mask, max_new_tokens=NEW_TOKENS)
                n = 32000 // 50 * 5
                prompt = 0.4 * torch.sin(torch.arange(n) * 0.03).reshape(1, 1, n)
                ref["gen.cont.input"] = prompt
                ref["gen.cont"], _ = greedy(model, capture, 3.0, margins, input_values=prompt,
                                            **dict(one, max_new_tokens=CONT_TOKENS))
            else:
                one = dict(input_ids=ids[:1], attention_mask=mask[:1], max_new_tokens=NEW_TOKENS)
                ref["stereo.g3"], audio = greedy(model, capture, 3.0, margins, **one)
                ref["stereo.g3.audio"] = audio

    print("smallest greedy margin:", min(margins))
    assert min(margins) > MIN_MARGIN, margins
    ref = {k: v.contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(args.out, "musicgen-tiny-reference.safetensors"),
              metadata={"prompts": json.dumps(PROMPTS), "new_tokens": str(NEW_TOKENS),
                        "cont_tokens": str(CONT_TOKENS), "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "tokenizers": tokenizers.__version__})
    for k, v in sorted(ref.items()):
        print(k, tuple(v.shape), v.dtype)


if __name__ == "__main__":
    main()
