//! The device seam, shown rather than assumed: a backend whose buffers are opaque handles into
//! a private store (as device memory is to the host), whose contents the tape and the test reach
//! only through `upload` and `download`, runs the whole-model gradient check through the tape
//! unchanged. Its kernels are the CPU backend's, run inside the store, so the bounds are the
//! same as in `gradcheck.rs`.

#[path = "support/gradients.rs"]
mod gradients;
#[path = "support/reference64.rs"]
mod reference64;

use device::Opaque;

mod device {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokenformer_train::backend::{
        AdamStep, Affine, Backend, Dims, Mat, MatMul, Qkv, RopeTables, Theta,
    };
    use tokenformer_train::Cpu;

    type Store = Arc<Mutex<HashMap<u64, Vec<f32>>>>;

    /// The "device": its memory is a private map from handle ids to contents.
    #[derive(Default)]
    pub struct Opaque {
        store: Store,
        next: Mutex<u64>,
    }

    /// A device buffer: an id, freed when dropped. It does not expose its contents.
    pub struct Handle {
        id: u64,
        store: Store,
    }

    impl Drop for Handle {
        fn drop(&mut self) {
            self.store.lock().unwrap().remove(&self.id);
        }
    }

    impl Opaque {
        /// Buffers alive on the device.
        pub fn live(&self) -> usize {
            self.store.lock().unwrap().len()
        }

        fn alloc(&self, x: Vec<f32>) -> Handle {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            self.store.lock().unwrap().insert(*next, x);
            Handle {
                id: *next,
                store: self.store.clone(),
            }
        }

        /// A kernel's read of an input.
        fn read(&self, h: &Handle) -> Vec<f32> {
            self.store.lock().unwrap()[&h.id].clone()
        }

        /// A kernel's write of an output: `f` runs on the contents, taken out of the store
        /// meanwhile (so writes to several outputs nest).
        fn write<R>(&self, h: &mut Handle, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
            let mut x = self
                .store
                .lock()
                .unwrap()
                .remove(&h.id)
                .expect("live buffer");
            let r = f(&mut x);
            self.store.lock().unwrap().insert(h.id, x);
            r
        }
    }

    fn refs(x: &Qkv<Vec<f32>>) -> Qkv<&Vec<f32>> {
        Qkv {
            q: &x.q,
            k: &x.k,
            v: &x.v,
        }
    }

    impl Backend for Opaque {
        type Buf = Handle;

        fn name(&self) -> &'static str {
            "opaque"
        }

        fn zeros(&self, n: usize) -> Handle {
            self.alloc(vec![0.0; n])
        }

        fn upload(&self, x: &[f32]) -> Handle {
            self.alloc(x.to_vec())
        }

        fn download(&self, x: &Handle) -> Vec<f32> {
            self.read(x)
        }

        fn fill_zero(&self, x: &mut Handle) {
            self.write(x, |x| x.fill(0.0));
        }

        fn len(&self, x: &Handle) -> usize {
            self.read(x).len()
        }

        fn copy_into(&self, x: &Handle, y: &mut Handle) {
            let x = self.read(x);
            self.write(y, |y| y.copy_from_slice(&x));
        }

        fn matmul(
            &self,
            size: MatMul,
            a: Mat<'_, Self>,
            b: Mat<'_, Self>,
            c: &mut Handle,
            acc: bool,
        ) {
            let (ab, bb) = (self.read(a.buf), self.read(b.buf));
            let (a, b) = (
                Mat::<Cpu> {
                    buf: &ab,
                    transposed: a.transposed,
                },
                Mat::<Cpu> {
                    buf: &bb,
                    transposed: b.transposed,
                },
            );
            self.write(c, |c| Cpu.matmul(size, a, b, c, acc));
        }

        fn add_assign(&self, y: &mut Handle, x: &Handle) {
            let x = self.read(x);
            self.write(y, |y| Cpu.add_assign(y, &x));
        }

        fn embed_forward(&self, table: &Handle, tokens: &[u32], dims: Dims, out: &mut Handle) {
            let table = self.read(table);
            self.write(out, |out| Cpu.embed_forward(&table, tokens, dims, out));
        }

        fn embed_backward(&self, tokens: &[u32], dout: &Handle, dims: Dims, dtable: &mut Handle) {
            let dout = self.read(dout);
            self.write(dtable, |dt| Cpu.embed_backward(tokens, &dout, dims, dt));
        }

        fn layer_norm_forward(
            &self,
            x: &Handle,
            dims: Dims,
            eps: f32,
            y: &mut Handle,
            rstd: &mut Handle,
        ) {
            let x = self.read(x);
            self.write(y, |y| {
                self.write(rstd, |r| Cpu.layer_norm_forward(&x, dims, eps, y, r))
            });
        }

        fn layer_norm_backward(
            &self,
            y: &Handle,
            rstd: &Handle,
            dy: &Handle,
            dims: Dims,
            dx: &mut Handle,
        ) {
            let (y, rstd, dy) = (self.read(y), self.read(rstd), self.read(dy));
            self.write(dx, |dx| Cpu.layer_norm_backward(&y, &rstd, &dy, dims, dx));
        }

        fn theta_forward(&self, a: &Handle, spec: Theta, s: &mut Handle) {
            let a = self.read(a);
            self.write(s, |s| Cpu.theta_forward(&a, spec, s));
        }

        fn theta_backward(
            &self,
            a: &Handle,
            s: &Handle,
            ds: &Handle,
            spec: Theta,
            da: &mut Handle,
        ) {
            let (a, s, ds) = (self.read(a), self.read(s), self.read(ds));
            self.write(da, |da| Cpu.theta_backward(&a, &s, &ds, spec, da));
        }

        fn rotary(&self, x: &mut Handle, dims: Dims, rope: &RopeTables<Self>, inverse: bool) {
            let rope = RopeTables::<Cpu> {
                cos: self.read(&rope.cos),
                sin: self.read(&rope.sin),
                half: rope.half,
            };
            self.write(x, |x| Cpu.rotary(x, dims, &rope, inverse));
        }

        fn attention_forward(
            &self,
            x: Qkv<&Handle>,
            dims: Dims,
            out: &mut Handle,
            probs: &mut Handle,
        ) {
            let x = x.map(|h| self.read(h));
            self.write(out, |o| {
                self.write(probs, |p| Cpu.attention_forward(refs(&x), dims, o, p))
            });
        }

        fn attention_backward(
            &self,
            x: Qkv<&Handle>,
            probs: &Handle,
            dout: &Handle,
            dims: Dims,
            dx: Qkv<&mut Handle>,
        ) {
            let (x, probs, dout) = (x.map(|h| self.read(h)), self.read(probs), self.read(dout));
            self.write(dx.q, |q| {
                self.write(dx.k, |k| {
                    self.write(dx.v, |v| {
                        let dx = Qkv { q, k, v };
                        Cpu.attention_backward(refs(&x), &probs, &dout, dims, dx)
                    })
                })
            });
        }

        fn affine_norm_forward(
            &self,
            x: &Handle,
            p: Affine<&Handle>,
            eps: f32,
            xhat: &mut Handle,
            rstd: &mut Handle,
            y: &mut Handle,
        ) {
            let (x, w, b) = (self.read(x), self.read(p.weight), self.read(p.bias));
            let p = Affine {
                weight: &w,
                bias: &b,
            };
            self.write(xhat, |xh| {
                self.write(rstd, |r| {
                    self.write(y, |y| Cpu.affine_norm_forward(&x, p, eps, xh, r, y))
                })
            });
        }

        fn affine_norm_backward(
            &self,
            xhat: &Handle,
            rstd: &Handle,
            w: &Handle,
            dy: &Handle,
            dx: &mut Handle,
            dp: Affine<&mut Handle>,
        ) {
            let (xhat, rstd) = (self.read(xhat), self.read(rstd));
            let (w, dy) = (self.read(w), self.read(dy));
            self.write(dx, |dx| {
                self.write(dp.weight, |dw| {
                    self.write(dp.bias, |db| {
                        let dp = Affine {
                            weight: dw,
                            bias: db,
                        };
                        Cpu.affine_norm_backward(&xhat, &rstd, &w, &dy, dx, dp)
                    })
                })
            });
        }

        fn cross_entropy(
            &self,
            logits: &Handle,
            targets: &[u32],
            vocab: usize,
            grad_scale: f32,
            dlogits: &mut Handle,
        ) -> Vec<f64> {
            let z = self.read(logits);
            self.write(dlogits, |dz| {
                Cpu.cross_entropy(&z, targets, vocab, grad_scale, dz)
            })
        }

        fn sum_squares(&self, x: &Handle) -> f64 {
            Cpu.sum_squares(&self.read(x))
        }

        fn scale(&self, x: &mut Handle, s: f32) {
            self.write(x, |x| Cpu.scale(x, s));
        }

        fn adamw(
            &self,
            p: &mut Handle,
            g: &Handle,
            m: &mut Handle,
            v: &mut Handle,
            step: AdamStep,
        ) {
            let g = self.read(g);
            self.write(p, |p| {
                self.write(m, |m| self.write(v, |v| Cpu.adamw(p, &g, m, v, step)))
            });
        }
    }
}

#[test]
fn whole_model_gradient_through_opaque_buffers_matches_finite_differences() {
    let be = Opaque::default();
    gradients::whole_model_gradient_matches_finite_differences(&be);
    // Every buffer the tape, the parameters and the gradients allocated was freed.
    assert_eq!(be.live(), 0);
}

/// One step (tape, clipping, AdamW) on opaque buffers gives the CPU's parameters bit for bit:
/// the optimizer's ops cross the seam too.
#[test]
fn opaque_step_equals_cpu_step() {
    use tokenformer_core::{Rng, ThetaKind};
    use tokenformer_train::backend::Backend;
    use tokenformer_train::optim::{AdamW, Moments};
    use tokenformer_train::{Cpu, Params, Rows, Tape};

    fn step<B: Backend>(be: &B, model: &tokenformer_core::Model<'_>) -> Vec<Vec<f32>> {
        let rows = Rows { batch: 2, seq: 7 };
        let mut rng = Rng::new(3);
        let tokens: Vec<u32> = (0..rows.count()).map(|_| rng.below(11) as u32).collect();
        let mut params = Params::from_model(be, model);
        let mut grads = Params::zeros_like(be, &params);
        let mut moments = Moments::new(be, &params);
        let mut tape = Tape::new(be, &params, rows);
        let logits = tape.forward(&tokens);
        tape.backward_from_cross_entropy(logits, &tokens, 1.0, &mut grads);
        drop(tape);
        // A clip low enough that the gradients are scaled.
        let opt = AdamW {
            clip: 0.5,
            ..AdamW::default()
        };
        let norm = opt.update(be, &mut params, &mut grads, &mut moments, 1e-2);
        assert!(norm > 0.5, "gradient norm {norm} not clipped");
        params.tensors.iter().map(|t| be.download(t)).collect()
    }

    let cfg = gradients::tiny(ThetaKind::L2NormGelu, [6, 5, 8]);
    let model = tokenformer_core::init::init(cfg, 9).unwrap();
    let be = Opaque::default();
    let (opaque, cpu) = (step(&be, &model), step(&Cpu, &model));
    let bits = |t: &[Vec<f32>]| -> Vec<u32> { t.iter().flatten().map(|v| v.to_bits()).collect() };
    assert_eq!(bits(&opaque), bits(&cpu));
    assert_eq!(be.live(), 0);
}
