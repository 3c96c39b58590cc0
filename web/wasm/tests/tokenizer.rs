//! The browser's BPE encoder against the host's `tokenizers` crate (the CLI's tokenizer), on
//! both bundled tokenizers: every line of the held-out text, windows of several lines, the
//! whole file, and strings chosen for the pre-tokenizer's corners.

use tokenformer_web::bpe::{Tokenizer, TokenizerError};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn pair(name: &str) -> (Tokenizer, tokenizers::Tokenizer) {
    let path = format!("{ROOT}/models/{name}");
    let json = std::fs::read_to_string(&path).unwrap();
    (
        Tokenizer::from_json(&json).unwrap(),
        tokenizers::Tokenizer::from_file(&path).unwrap(),
    )
}

fn corner_cases() -> Vec<String> {
    [
        "",
        " ",
        "   ",
        "\n",
        "\n\n\nROMEO:",
        "a  b   c    d",
        "  leading and trailing  ",
        "tab\tand\t\tmore\t",
        "line\r\nbreaks\r\n\r\n",
        "ROMEO:\nWhat light through yonder window breaks?",
        "I'm, you're, we've, he'll, she'd, it's, 'T IS 'tis'",
        "don't DON'T ''s ''",
        "12 345 6789 1,000.50 3rd 4th",
        "café naïve façade — “quoted” ‘single’ … ½ ² Ⅻ",
        "日本語のテキスト 中文 한국어 Ελληνικά русский",
        "emoji 😀😀 👩‍👩‍👧 🇫🇷 a😀b",
        "<|endoftext|>",
        "ROMEO:<|endoftext|>JULIET:",
        "<|endoftext|><|endoftext|> <|endoftext|>\n",
        "<|endoftext|  <|endof",
        "!!!??? ... ;;; --- ***",
        " \u{a0}nbsp\u{2003}em\u{3000}ideographic",
        "\u{0301}combining e\u{0301} a\u{0308}",
        "\u{feff}bom \u{200b}zero-width",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn heldout() -> String {
    std::fs::read_to_string(format!("{ROOT}/models/heldout.txt")).unwrap()
}

fn check(name: &str, texts: &[String]) -> usize {
    let (ours, host) = pair(name);
    for text in texts {
        let want = host
            .encode(text.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        let got = ours.encode(text);
        assert_eq!(got, want, "{name}: {text:?}");
        // Decoding: the tokens' bytes joined, as the page's streaming UTF-8 decoder sees them.
        let bytes: Vec<u8> = got
            .iter()
            .flat_map(|&id| ours.token_bytes(id).unwrap().to_vec())
            .collect();
        assert_eq!(bytes, text.as_bytes(), "{name}: round trip of {text:?}");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            host.decode(&want, false).unwrap(),
            "{name}: decode of {text:?}"
        );
    }
    texts.len()
}

fn all_texts() -> Vec<String> {
    let text = heldout();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut texts = corner_cases();
    texts.extend(lines.iter().map(|l| l.to_string()));
    // Windows of 1 to 6 lines (runs of blank lines, speaker turns), every 7th start.
    for start in (0..lines.len()).step_by(7) {
        let n = 1 + start % 6;
        texts.push(lines[start..(start + n).min(lines.len())].concat());
    }
    texts.push(text);
    texts
}

#[test]
fn bundled_tokenizer_matches_the_host() {
    let n = check("tokenizer.json", &all_texts());
    assert!(n > 3000, "only {n} strings checked");
}

#[test]
fn tiny_tokenizer_matches_the_host() {
    check("tiny-tokenizer.json", &all_texts());
}

#[test]
fn firmware_prompt_ids() {
    // The ids firmware/src/decode.rs states for this prompt.
    let (ours, _) = pair("tiny-tokenizer.json");
    assert_eq!(
        ours.encode("ROMEO:\nWhat light"),
        [50, 47, 45, 37, 47, 26, 199, 473, 368, 356]
    );
}

#[test]
fn malformed_or_unsupported_tokenizers_are_errors() {
    let json = std::fs::read_to_string(format!("{ROOT}/models/tiny-tokenizer.json")).unwrap();
    assert!(matches!(
        Tokenizer::from_json("{not json"),
        Err(TokenizerError::Json(_))
    ));
    assert!(matches!(
        Tokenizer::from_json("{}"),
        Err(TokenizerError::Unsupported(_))
    ));
    let edit = |from: &str, to: &str| {
        assert!(json.contains(from), "{from}");
        Tokenizer::from_json(&json.replacen(from, to, 1)).err()
    };
    assert!(matches!(
        edit(r#""normalizer": null"#, r#""normalizer": {"type": "NFC"}"#),
        Some(TokenizerError::Unsupported(_))
    ));
    assert!(matches!(
        edit(
            r#""add_prefix_space": false"#,
            r#""add_prefix_space": true"#
        ),
        Some(TokenizerError::Unsupported(_))
    ));
    assert!(matches!(
        edit(r#""type": "BPE""#, r#""type": "WordPiece""#),
        Some(TokenizerError::Unsupported(_))
    ));
    assert!(matches!(
        edit(r#""merges": ["#, r#""merges": [["no such", "token"], "#),
        Some(TokenizerError::UnknownMerge(_))
    ));
    assert!(matches!(
        edit(r#""vocab": {"#, r#""vocab": 7, "x": {"#),
        Some(TokenizerError::Missing("model.vocab"))
    ));
}
