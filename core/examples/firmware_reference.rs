//! The host side of `scripts/firmware.sh`: the firmware's greedy decode (`firmware/src/decode.rs`,
//! the same source) on this machine, printing the lines the firmware prints.
//!
//! Built with `--no-default-features` it runs core's scalar reference kernels, the code the
//! microcontroller runs, and must match the firmware bit for bit; with the default features it
//! runs the SIMD kernels (a near-tie may then pick another id).
//!
//!     cargo run --release -p tokenformer-core --no-default-features --example firmware_reference \
//!         -- models/tiny-q8_0.safetensors models/tiny-tokenizer.json

extern crate alloc;

#[path = "../../firmware/src/decode.rs"]
mod decode;
#[path = "../../firmware/src/token_bytes.rs"]
mod token_bytes;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, tokenizer_path] = &args[..] else {
        eprintln!("usage: firmware_reference <model.safetensors> <tokenizer.json>");
        return ExitCode::from(2);
    };
    let run = || -> Result<String, String> {
        let bytes = std::fs::read(model_path).map_err(|e| format!("{model_path}: {e}"))?;
        let json = std::fs::read_to_string(tokenizer_path)
            .map_err(|e| format!("{tokenizer_path}: {e}"))?;
        let table = token_bytes::token_bytes(&json)?;
        let table: Vec<&[u8]> = table.iter().map(Vec::as_slice).collect();
        let model = decode::load(&bytes).map_err(|e| e.to_string())?;
        let start = std::time::Instant::now();
        let micros = || start.elapsed().as_micros() as u32;
        let out = decode::greedy(&model, &micros).map_err(|e| e.to_string())?;
        let mut text = String::new();
        decode::print(&mut text, &out, &table).map_err(|e| e.to_string())?;
        let per_token = out.decode_ticks as f64 / (decode::GENERATE - 1) as f64;
        text += &format!(
            "host_time: prompt {} µs, decode {per_token:.0} µs per token\n",
            out.prompt_ticks
        );
        Ok(text)
    };
    match run() {
        Ok(text) => {
            print!(
                "kernels: {}\n{text}",
                tokenformer_core::kernels::instruction_set()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
