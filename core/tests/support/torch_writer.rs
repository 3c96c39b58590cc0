//! Test support: writes state dicts the way `torch.save` lays them out (protocol-2 pickle of an
//! OrderedDict of `_rebuild_tensor_v2` calls with persistent-id storages, in a STORED zip under
//! `archive/`). The parity fixture itself comes from real torch.save; this writer makes small
//! and deliberately broken variants for the malformed-input tests and the fuzz seeds.
//! Shared through `#[path]` by core/tests, cli/tests and fuzz/src/bin/make_seeds.rs.
#![allow(dead_code)]

/// One tensor entry of the state dict.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    /// `FloatStorage`, `HalfStorage`, `BFloat16Storage`, ...
    pub class: String,
    pub key: String,
    /// Elements the storage declares.
    pub storage_numel: u64,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn int(out: &mut Vec<u8>, x: u64) {
    if x < 256 {
        out.extend_from_slice(&[b'K', x as u8]);
    } else if x < 65536 {
        out.push(b'M');
        out.extend_from_slice(&(x as u16).to_le_bytes());
    } else if x < (1 << 31) {
        out.push(b'J');
        out.extend_from_slice(&(x as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&[0x8a, 8]);
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn tuple(out: &mut Vec<u8>, xs: &[u64]) {
    out.push(b'(');
    for &x in xs {
        int(out, x);
    }
    out.push(b't');
}

/// The pickle of an OrderedDict of these tensors (no memo, which the reader does not need).
pub fn pickle(entries: &[Entry]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend_from_slice(b"ccollections\nOrderedDict\n)R(");
    for e in entries {
        unicode(&mut p, &e.name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        unicode(&mut p, "storage");
        p.extend_from_slice(format!("ctorch\n{}\n", e.class).as_bytes());
        unicode(&mut p, &e.key);
        unicode(&mut p, "cpu");
        int(&mut p, e.storage_numel);
        p.extend_from_slice(b"tQ");
        int(&mut p, e.offset);
        tuple(&mut p, &e.shape);
        tuple(&mut p, &e.stride);
        p.push(0x89);
        p.extend_from_slice(b"ccollections\nOrderedDict\n)R");
        p.extend_from_slice(b"tR");
    }
    p.extend_from_slice(b"u.");
    p
}

/// A STORED zip of these entries, CRCs included.
pub fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut cd = Vec::new();
    for (name, data) in entries {
        let off = out.len() as u32;
        let crc = crc32fast::hash(data);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // flags, method, time, date
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&[20, 0, 20, 0]);
        common(&mut cd);
        cd.extend_from_slice(&[0; 10]); // comment len, disk, attributes
        cd.extend_from_slice(&off.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&cd);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A torch.save file from a pickle and its storages (`key` → bytes).
pub fn torch_file(pkl: Vec<u8>, storages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut entries = vec![("archive/data.pkl".to_string(), pkl)];
    entries.push(("archive/byteorder".into(), b"little".to_vec()));
    for (k, b) in storages {
        entries.push((format!("archive/data/{k}"), b.clone()));
    }
    entries.push(("archive/version".into(), b"3\n".to_vec()));
    zip(&entries)
}

/// Geometry of a small official-layout model.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub layers: usize,
    pub d: usize,
    pub qkv: usize,
    pub proj: usize,
    pub ffn: usize,
    pub vocab: usize,
}

/// A valid official state dict with deterministic pseudo-random f32 weights: one packed
/// storage per tensor, in the order the authors' model lists them.
pub fn official(g: Geometry, seed: u64) -> (Vec<Entry>, Vec<(String, Vec<u8>)>) {
    let mut names: Vec<(String, usize)> =
        vec![("sequential.0.word_embeddings.weight".into(), g.vocab)];
    for l in 0..g.layers {
        for (m, n) in [
            ("attention.query", g.qkv),
            ("attention.key", g.qkv),
            ("attention.value", g.qkv),
            ("attention.proj", g.proj),
            ("mlp", g.ffn),
        ] {
            for part in ["key", "value"] {
                names.push((format!("sequential.{}.{m}.{part}_param_tokens", l + 2), n));
            }
        }
    }
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
    };
    let mut entries = Vec::new();
    let mut storages = Vec::new();
    let mut push = |name: String, shape: Vec<u64>, data: Vec<f32>| {
        let key = entries.len().to_string();
        let stride = if shape.len() == 2 {
            vec![shape[1], 1]
        } else {
            vec![1]
        };
        entries.push(Entry {
            name,
            class: "FloatStorage".into(),
            key: key.clone(),
            storage_numel: data.len() as u64,
            offset: 0,
            shape,
            stride,
        });
        storages.push((key, data.iter().flat_map(|x| x.to_le_bytes()).collect()));
    };
    for (name, rows) in names {
        let data = (0..rows * g.d).map(|_| next()).collect();
        push(name, vec![rows as u64, g.d as u64], data);
    }
    let norm = g.layers + 3;
    push(
        format!("sequential.{norm}.norm.weight"),
        vec![g.d as u64],
        vec![1.0; g.d],
    );
    push(
        format!("sequential.{norm}.norm.bias"),
        vec![g.d as u64],
        (0..g.d).map(|_| next()).collect(),
    );
    (entries, storages)
}
