// A thin wrapper over the tokenformer-web module's extern "C" exports (web/wasm/src/lib.rs):
// copies strings and the checkpoint into its memory and reads ids and token bytes back.
// No imports, no glue generator: works in a browser or in node.

export class TokenFormer {
  // wasm, model: ArrayBuffer or typed array; tokenizer: the tokenizer.json text.
  static async load(wasm, model, tokenizer) {
    const { instance } = await WebAssembly.instantiate(wasm, {});
    const tf = new TokenFormer(instance.exports);
    const bytes = new Uint8Array(model);
    const p = tf.x.tf_model_alloc(bytes.length);
    if (p === 0) tf.fail();
    tf.bytes(p, bytes.length).set(bytes);
    tf.check(tf.x.tf_model_load());
    tf.withString(tokenizer, (ptr, len) => tf.check(tf.x.tf_tokenizer_load(ptr, len)));
    return tf;
  }

  constructor(exports) {
    this.x = exports;
    this.context = 0;
  }

  // A fresh view each time: the memory's buffer is replaced when it grows.
  bytes(ptr, len) {
    return new Uint8Array(this.x.memory.buffer, ptr, len);
  }

  fail() {
    const msg = new TextDecoder().decode(this.bytes(this.x.tf_error_ptr(), this.x.tf_error_len()));
    throw new Error(msg);
  }

  check(status) {
    if (status < 0) this.fail();
    return status;
  }

  withString(s, f) {
    const b = new TextEncoder().encode(s);
    const p = this.x.tf_alloc(b.length);
    if (p === 0) throw new Error("out of memory");
    try {
      this.bytes(p, b.length).set(b);
      return f(p, b.length);
    } finally {
      this.x.tf_free(p, b.length);
    }
  }

  // Tokenize and feed the prompt; returns its ids. temperature 0 is greedy.
  start(prompt, { temperature = 0.8, topK = 40, topP = 0.95, seed = 0 } = {}) {
    const n = this.withString(prompt, (p, len) =>
      this.check(this.x.tf_start(p, len, temperature, topK, topP, seed >>> 0)));
    return Array.from(new Uint32Array(this.x.memory.buffer, this.x.tf_ids_ptr(), n));
  }

  // The next id, or null once the context is full.
  next() {
    const id = this.x.tf_next();
    if (id === -2) return null;
    return this.check(id);
  }

  // The bytes of one token (feed them to a streaming TextDecoder: a token may end inside a
  // UTF-8 character).
  tokenBytes(id) {
    return this.bytes(this.x.tf_token_ptr(id), this.x.tf_token_len(id)).slice();
  }

  maxContext() {
    return this.x.tf_context();
  }
}
