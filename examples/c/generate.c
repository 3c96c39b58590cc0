/* Print a continuation of a prompt with the bundled Shakespeare model, through the C API.
 *
 *   cargo build --release -p tokenformer-capi
 *   cc -O2 -Iinclude examples/c/generate.c target/release/libtokenformer.a \
 *      -lpthread -ldl -lm -o generate
 *   ./generate [prompt] [max_tokens] [model.safetensors] [tokenizer.json]
 */
#include <stdio.h>
#include <stdlib.h>

#include "tokenformer.h"

#define CHECK(call)                                                          \
    do {                                                                     \
        TfStatus s_ = (call);                                                \
        if (s_ != TF_OK) {                                                   \
            fprintf(stderr, "error %d in %s: %s\n", (int)s_, #call,          \
                    tf_last_error());                                        \
            goto done;                                                       \
        }                                                                    \
    } while (0)

int main(int argc, char **argv) {
    const char *prompt = argc > 1 ? argv[1] : "ROMEO:";
    int max_tokens = argc > 2 ? atoi(argv[2]) : 48;
    const char *model_path = argc > 3 ? argv[3] : "cli/assets/shakespeare-q8_0.safetensors";
    const char *tokenizer_path = argc > 4 ? argv[4] : "cli/assets/tokenizer.json";
    int rc = 1;
    TfModel *model = NULL;
    TfTokenizer *tok = NULL;
    TfSession *session = NULL;
    TfDecoder *decoder = NULL;
    uint32_t *ids = NULL;
    size_t n = 0, len = 0;
    char piece[256];

    fprintf(stderr, "tokenformer ABI %u, checkpoint format %u\n", tf_abi_version(),
            tf_checkpoint_format_version());
    CHECK(tf_set_threads(2));
    CHECK(tf_model_load_file(model_path, &model));
    CHECK(tf_tokenizer_load_file(tokenizer_path, &tok));

    /* Ask for the length first, then fill. */
    if (tf_tokenize(tok, prompt, NULL, 0, &n) != TF_ERR_BUFFER_TOO_SMALL || n == 0) {
        fprintf(stderr, "empty prompt or tokenizer error: %s\n", tf_last_error());
        goto done;
    }
    ids = malloc(n * sizeof *ids);
    if (!ids) goto done;
    CHECK(tf_tokenize(tok, prompt, ids, n, &n));

    CHECK(tf_session_new(model, &session));
    TfSampling sampling = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 42};
    CHECK(tf_session_set_sampling(session, &sampling));
    uint32_t eot;
    if (tf_tokenizer_eot(tok, &eot) == TF_OK) CHECK(tf_session_set_stop_ids(session, &eot, 1));
    CHECK(tf_session_feed(session, ids, n, NULL, 0));
    CHECK(tf_decoder_new(tok, &decoder));

    printf("%s", prompt);
    for (int i = 0; i < max_tokens; i++) {
        uint32_t id;
        bool stop;
        CHECK(tf_session_next(session, &id, &stop));
        if (stop) break;
        CHECK(tf_decoder_push(decoder, id, piece, sizeof piece, &len));
        fputs(piece, stdout);
        fflush(stdout);
    }
    printf("\n");
    rc = 0;
done:
    tf_decoder_free(decoder);
    tf_session_free(session);
    tf_tokenizer_free(tok);
    tf_model_free(model);
    free(ids);
    return rc;
}
