/* scale.h — SCALE: Supervised Contrastive Adapter Learning for fine-grained
 * Evaluation. A dependency-free C11 reference implementation of
 *
 *   S. Engelson, J. Ehrhardt, H. Handels, "Finetuning Medical Vision-Language
 *   Models for Interpretable and Fine-grained Disease Classification".
 *
 * It loads pretrained medical vision-language models (MONET, MedCLIP, OpenAI
 * CLIP) from their published files, embeds images and prompts with them, and
 * trains the paper's adapters with its hierarchical cross-entropies and
 * supervised contrastive loss. The book in book/ walks through each equation
 * beside the code that computes it.
 *
 * QUICK START
 *   sc_ctx ctx; sc_ctx_init(&ctx);                 // activation + gradient arenas
 *   sc_tensor *x = sc_tensor_new(&ctx.act, 2, (int64_t[]){4, 8}, "x");
 *   sc_tensor *w = sc_param_new(&weights, 2, (int64_t[]){3, 8}, "w");
 *   sc_tensor *y = sc_linear(&ctx, x, w, NULL);    // (4, 3), recorded on the tape
 *   sc_backward(&ctx, sc_sum_all(&ctx, y));        // w->grad now holds dL/dw
 *   sc_ctx_free(&ctx);
 *
 * NOTATION (book/notation.md has the full table)
 *   B batch, T text tokens, N image tokens (or images in a loss), C channels,
 *   H heads, D head dim, V vocab, K classes, P patch, M window (or texts in a
 *   loss), L layers, R adapter bottleneck. Shapes are written in comments as
 *   (B, T, C), outermost first; all tensors are row-major float32.
 *
 * OWNERSHIP
 *   Memory lives in arenas (sc_arena). A tensor is a view into an arena and
 *   never owns memory. The caller never free()s anything the library returns;
 *   only sc_*_free on the owner (arena, model, tokenizer, image, ...) ends a
 *   lifetime.
 *
 * ERRORS
 *   Functions that touch the outside world (files, user arguments) return an
 *   sc_status (SC_OK = 0, negative on failure) and fill an sc_err with one
 *   sentence naming the file and what is wrong. Kernels never fail once shapes
 *   are valid: a bad shape inside the library is a bug and stops the program
 *   through SC_ASSERT, which is always on.
 *
 * VERSION  SC_VERSION_MAJOR.SC_VERSION_MINOR.SC_VERSION_PATCH below.
 */
#ifndef SCALE_H
#define SCALE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SC_VERSION_MAJOR 0
#define SC_VERSION_MINOR 1
#define SC_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* ---- scale.c: status, errors, arenas, random numbers --------------------- */
/* ======================================================================== */

typedef enum {
    SC_OK = 0,
    SC_ENOMEM = -1,       /* an allocation failed or a size limit was hit */
    SC_EIO = -2,          /* the operating system refused (open, read, write) */
    SC_EFORMAT = -3,      /* a file does not follow its format */
    SC_ESHAPE = -4,       /* tensor shapes do not fit together */
    SC_ERANGE = -5,       /* a value or index is out of its allowed range */
    SC_EUNSUPPORTED = -6, /* valid input that this library does not handle */
    SC_EARG = -7          /* a bad command-line or API argument */
} sc_status;

/* One precise sentence about the last failure, e.g.
 * "data/ref/ln.npy: shape (4,8) but expected (4,16)". */
typedef struct {
    char msg[512];
} sc_err;

const char *sc_strerror(sc_status code);
const char *sc_version(void);

/* Format msg into err (if err is not NULL) and return code. */
sc_status sc_fail(sc_err *err, sc_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Always-on assertion for internal invariants (never for file contents). */
#define SC_ASSERT(cond, ...)                                                    \
    do {                                                                        \
        if (!(cond)) sc__assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);   \
    } while (0)
void sc__assert_fail(const char *file, int line, const char *cond,
                     const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((noreturn, format(printf, 4, 5)))
#endif
    ;

/* Overflow-checked size arithmetic: return 1 and store the result when it
 * fits in size_t, else return 0. Every size read from a file goes through
 * these before it reaches an allocation. */
int sc_mul_ok(size_t a, size_t b, size_t *out);
int sc_add_ok(size_t a, size_t b, size_t *out);

/* An arena: bump allocation from a chain of large blocks. Marks and rewinds
 * free everything allocated after the mark in O(1); blocks are kept for
 * reuse, so a training step that rewinds to the same mark allocates nothing
 * from the system after the first step. `limit` (0 = none) caps the total
 * bytes the arena may hold. */
typedef struct sc_arena_block sc_arena_block;
typedef struct {
    sc_arena_block *first;  /* blocks in allocation order */
    sc_arena_block *cur;    /* the block allocations come from */
    size_t block_size;      /* default size of a new block */
    size_t limit;           /* 0 = unlimited */
    size_t reserved;        /* bytes in all blocks */
    size_t used;            /* bytes handed out since the last reset */
    size_t peak;            /* high-water mark of `used` */
    const char *name;       /* for error messages: "weights", "activations" */
} sc_arena;

typedef struct {
    sc_arena_block *block;
    size_t offset;
    size_t used;
} sc_arena_mark;

void sc_arena_init(sc_arena *a, const char *name, size_t block_size, size_t limit);
/* 64-byte aligned, uninitialised; NULL when the limit or malloc fails. */
void *sc_arena_alloc(sc_arena *a, size_t bytes);
void *sc_arena_calloc(sc_arena *a, size_t count, size_t size);
sc_arena_mark sc_arena_get_mark(const sc_arena *a);
void sc_arena_rewind(sc_arena *a, sc_arena_mark m);
void sc_arena_reset(sc_arena *a);
void sc_arena_free(sc_arena *a);

/* xorshift64* generator (as in llm.c / llama2.c): small, fast, seedable,
 * and identical on every platform. */
typedef struct {
    uint64_t state;
} sc_rng;

void sc_rng_seed(sc_rng *r, uint64_t seed);
uint32_t sc_rng_u32(sc_rng *r);
float sc_rng_uniform(sc_rng *r);                 /* [0, 1) */
float sc_rng_normal(sc_rng *r);                  /* N(0, 1), Box–Muller */
uint32_t sc_rng_below(sc_rng *r, uint32_t n);    /* uniform in [0, n) */
void sc_rng_shuffle(sc_rng *r, int *items, int n);

/* ======================================================================== */
/* ---- tensor.c: tensors, threads, GEMM, ops, autograd, optimizers --------- */
/* ======================================================================== */

#define SC_MAX_DIMS 4
#define SC_NAME_MAX 64

typedef struct sc_node sc_node;

/* A float32 view with up to 4 dimensions. `data` and `grad` point into
 * arenas; the tensor owns neither. Strides are in elements. */
typedef struct sc_tensor {
    float *data;
    float *grad;                 /* contiguous in `shape` (whatever the data
                                    strides); NULL until a gradient arrives */
    int ndim;
    int64_t shape[SC_MAX_DIMS];
    int64_t stride[SC_MAX_DIMS];
    int requires_grad;           /* a parameter, or computed from one */
    sc_node *node;               /* tape entry that produced it, or NULL */
    char name[SC_NAME_MAX];
} sc_tensor;

/* An execution context: where activations go and whether ops are recorded.
 *   act  — op outputs and tape nodes; rewound after every step
 *   grad — gradients of activations; rewound with act
 * Parameters and their gradients live in a weights arena owned by the model
 * (sc_param_new). */
typedef struct {
    sc_arena act;
    sc_arena grad;
    sc_node *tape;        /* last recorded node; nodes link backwards */
    int64_t n_nodes;
    int grad_enabled;     /* 0 = no-grad mode: nothing recorded */
} sc_ctx;

void sc_ctx_init(sc_ctx *ctx);
void sc_ctx_reset(sc_ctx *ctx);   /* drop all activations and the tape */
void sc_ctx_free(sc_ctx *ctx);
int sc_ctx_set_grad(sc_ctx *ctx, int enabled); /* returns previous mode */

/* -- shapes and construction -- */
int64_t sc_numel(const sc_tensor *t);
int sc_is_contiguous(const sc_tensor *t);
int sc_same_shape(const sc_tensor *a, const sc_tensor *b);
/* "(3, 224, 224)" into buf; returns buf. */
char *sc_shape_str(const sc_tensor *t, char *buf, size_t n);
/* Contiguous tensor from arena `a` (NULL data → abort: arenas used by ops
 * are sized generously; loaders use sc_tensor_try_new and report ENOMEM). */
sc_tensor *sc_tensor_new(sc_arena *a, int ndim, const int64_t *shape, const char *name);
sc_tensor *sc_tensor_try_new(sc_arena *a, int ndim, const int64_t *shape, const char *name);
sc_tensor *sc_tensor_zeros(sc_arena *a, int ndim, const int64_t *shape, const char *name);
/* A trainable parameter: data and a zeroed grad, requires_grad = 1. */
sc_tensor *sc_param_new(sc_arena *a, int ndim, const int64_t *shape, const char *name);
/* Wrap caller memory (e.g. an mmap'ed weight) without copying. */
sc_tensor *sc_tensor_wrap(sc_arena *a, float *data, int ndim, const int64_t *shape, const char *name);
void sc_tensor_fill(sc_tensor *t, float v);
void sc_tensor_set_name(sc_tensor *t, const char *name);

/* -- threads -- */
/* Number of worker threads: SCALE_THREADS, else the online CPUs. */
int sc_threads(void);
void sc_set_threads(int n);
/* Run fn(arg, i) for i in [0, n) on the thread pool; returns when all done.
 * Work items must write disjoint memory. */
typedef void (*sc_task_fn)(void *arg, int64_t i);
void sc_parallel_for(int64_t n, sc_task_fn fn, void *arg);

/* -- GEMM -- */
/* C (M×N) = op(A) (M×K) · op(B) (K×N), or C += ... when accumulate != 0.
 * op(X) = X or Xᵀ per trans flag; lda/ldb/ldc are row strides of the
 * matrices as stored. Row-major throughout. */
void sc_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
             const float *A, int64_t lda, const float *B, int64_t ldb,
             float *C, int64_t ldc, int accumulate);
/* The plain triple loop, kept as the reference the fast path is tested on. */
void sc_gemm_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float *C, int64_t ldc, int accumulate);
/* 1 when a SIMD kernel (AVX2/FMA) is in use: the CPU supports it and
 * SCALE_NO_SIMD is unset (or "0"). */
int sc_gemm_simd(void);
/* Name of the kernel in use: "avx2-fma" or "portable". */
const char *sc_gemm_kernel_name(void);

/* ---- tensor.c: ops (autograd-aware; record a node when ctx->grad_enabled
 * and an input requires grad). Outputs are fresh contiguous tensors in
 * ctx->act unless noted. ---- */

/* views (no copy) */
sc_tensor *sc_reshape(sc_ctx *ctx, sc_tensor *x, int ndim, const int64_t *shape);
sc_tensor *sc_slice(sc_ctx *ctx, sc_tensor *x, int axis, int64_t start, int64_t len);
sc_tensor *sc_contiguous(sc_ctx *ctx, sc_tensor *x);

/* linear algebra */
/* Batched matmul over the leading dims of a (and of b when b has the same
 * rank; a rank-2 b is shared by every batch item). trans flags transpose the
 * last two dims. */
sc_tensor *sc_matmul(sc_ctx *ctx, sc_tensor *a, sc_tensor *b, int trans_a, int trans_b);
/* y = x Wᵀ + b with PyTorch's weight layout W (out, in); b may be NULL. */
sc_tensor *sc_linear(sc_ctx *ctx, sc_tensor *x, sc_tensor *w, sc_tensor *b);

/* elementwise; b broadcasts over the leading dims of a (b's shape must equal
 * a trailing part of a's shape) */
sc_tensor *sc_add(sc_ctx *ctx, sc_tensor *a, sc_tensor *b);
sc_tensor *sc_sub(sc_ctx *ctx, sc_tensor *a, sc_tensor *b);
sc_tensor *sc_mul(sc_ctx *ctx, sc_tensor *a, sc_tensor *b);
sc_tensor *sc_div(sc_ctx *ctx, sc_tensor *a, sc_tensor *b);
sc_tensor *sc_scale(sc_ctx *ctx, sc_tensor *x, float s);
sc_tensor *sc_add_scalar(sc_ctx *ctx, sc_tensor *x, float s);
/* y = s · x with s a 1-element tensor (a learnable scalar such as α). */
sc_tensor *sc_mul_scalar_t(sc_ctx *ctx, sc_tensor *x, sc_tensor *s);

/* unary */
sc_tensor *sc_relu(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_gelu_erf(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_gelu_tanh(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_quick_gelu(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_sigmoid(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_tanh(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_exp(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_log(sc_ctx *ctx, sc_tensor *x);

/* reductions over one axis (the axis is removed from the shape) */
sc_tensor *sc_sum(sc_ctx *ctx, sc_tensor *x, int axis);
sc_tensor *sc_mean(sc_ctx *ctx, sc_tensor *x, int axis);
/* max keeps the argmax (as float indices) in *argmax when not NULL */
sc_tensor *sc_max(sc_ctx *ctx, sc_tensor *x, int axis, sc_tensor **argmax);
sc_tensor *sc_sum_all(sc_ctx *ctx, sc_tensor *x);   /* shape (1) */

/* normalisation and softmax (last axis) */
sc_tensor *sc_softmax(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_log_softmax(sc_ctx *ctx, sc_tensor *x);
sc_tensor *sc_layernorm(sc_ctx *ctx, sc_tensor *x, sc_tensor *w, sc_tensor *b, float eps);
sc_tensor *sc_l2_normalize(sc_ctx *ctx, sc_tensor *x);

/* indexing and layout */
/* out[i] = table[ids[i]] for n ids: (n, C) from table (V, C). */
sc_tensor *sc_embedding(sc_ctx *ctx, sc_tensor *table, const int32_t *ids, int64_t n);
sc_tensor *sc_concat(sc_ctx *ctx, sc_tensor *const *xs, int n, int axis);
sc_tensor *sc_permute(sc_ctx *ctx, sc_tensor *x, const int *perm);
sc_tensor *sc_transpose(sc_ctx *ctx, sc_tensor *x, int axis0, int axis1);
/* out = x where mask == 0, else value; mask (as floats, 0/1) broadcasts over
 * the leading dims of x like sc_add's b. */
sc_tensor *sc_masked_fill(sc_ctx *ctx, sc_tensor *x, const sc_tensor *mask, float value);
/* x (B, T, C), index[b] in [0, T): out (B, C) = x[b, index[b], :]. */
sc_tensor *sc_gather_rows(sc_ctx *ctx, sc_tensor *x, const int64_t *index);
/* Convolution with stride = kernel = P (patch embedding), as im2col + GEMM.
 * x (B, Cin, H, W), w (Cout, Cin, P, P), b (Cout) or NULL
 * → (B, (H/P)·(W/P), Cout), tokens row-major over the patch grid. */
sc_tensor *sc_patch_embed(sc_ctx *ctx, sc_tensor *x, sc_tensor *w, sc_tensor *b, int P);

/* -- autograd -- */
/* Seed d(out)/d(out) = 1 (out must hold one element) and walk the tape
 * backwards, accumulating (+=) into every tensor that requires grad. */
void sc_backward(sc_ctx *ctx, sc_tensor *out);
void sc_zero_grad(sc_tensor *const *params, int n);

/* -- optimizers (PyTorch semantics) -- */
typedef enum { SC_OPT_SGD, SC_OPT_ADAM, SC_OPT_ADAMW } sc_opt_kind;

typedef struct {
    sc_opt_kind kind;
    float lr;
    float momentum;      /* SGD */
    int nesterov;        /* SGD */
    float dampening;     /* SGD */
    float beta1, beta2;  /* Adam/AdamW */
    float eps;           /* Adam/AdamW */
    float weight_decay;  /* SGD/Adam: L2 added to the gradient; AdamW: decoupled */
} sc_opt_config;

typedef struct {
    sc_opt_config cfg;
    sc_tensor **params;
    int n_params;
    float **m;           /* first moment / momentum buffer per param */
    float **v;           /* second moment per param (Adam) */
    int64_t step;
    sc_arena state;      /* owns m, v and the param list */
} sc_optim;

sc_opt_config sc_opt_defaults(sc_opt_kind kind, float lr);
sc_status sc_optim_init(sc_optim *o, sc_opt_config cfg, sc_tensor *const *params, int n, sc_err *err);
void sc_optim_step(sc_optim *o);          /* one update with cfg.lr */
void sc_optim_zero_grad(sc_optim *o);
void sc_optim_free(sc_optim *o);
/* Learning rate at `step` (0-based) of `total` steps: a constant warm-up at
 * warmup_lr for the first warmup_steps (Dassl's "constant" warm-up, used by
 * CoOp), then cosine annealing from base_lr towards 0 over the remaining
 * steps, as torch.optim.lr_scheduler.CosineAnnealingLR with eta_min = 0. */
float sc_lr_cosine(float base_lr, int64_t step, int64_t total, int64_t warmup_steps, float warmup_lr);

/* ======================================================================== */
/* ---- io.c: files from outside ------------------------------------------- */
/* ======================================================================== */

/* -- whole files -- */
/* Read a file into malloc'ed memory (caller frees with free()); fails with
 * SC_ENOMEM when it is larger than max_bytes. A NUL is appended (not counted
 * in *len) so text files can be scanned as strings. */
sc_status sc_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len, sc_err *err);
/* Write atomically: to "path.tmp.<pid>", fsync-free, then rename over path.
 * On failure nothing is left behind. */
sc_status sc_write_file_atomic(const char *path, const void *data, size_t len, sc_err *err);

/* ---- io.c: JSON ---- */
/* RFC 8259 JSON. A document owns all its values in one arena. Strings are
 * decoded UTF-8 (escapes and surrogate pairs resolved), NUL-terminated, with
 * their byte length in `len` (a string may contain "\u0000"). */
typedef enum {
    SC_JSON_NULL,
    SC_JSON_BOOL,
    SC_JSON_NUMBER,
    SC_JSON_STRING,
    SC_JSON_ARRAY,
    SC_JSON_OBJECT
} sc_json_type;

typedef struct sc_json sc_json;
struct sc_json {
    sc_json_type type;
    int boolean;          /* SC_JSON_BOOL */
    double number;        /* SC_JSON_NUMBER */
    char *str;            /* SC_JSON_STRING */
    size_t len;           /* SC_JSON_STRING: bytes; ARRAY/OBJECT: members */
    sc_json **items;      /* ARRAY/OBJECT: members in file order */
    char **keys;          /* OBJECT: key of each member (NUL-terminated) */
};

typedef struct {
    sc_arena arena;
    sc_json *root;
} sc_json_doc;

#define SC_JSON_MAX_DEPTH 256

/* `what` names the source in error messages (usually the file path). */
sc_status sc_json_parse(sc_json_doc *doc, const char *text, size_t len, const char *what, sc_err *err);
sc_status sc_json_load(sc_json_doc *doc, const char *path, size_t max_bytes, sc_err *err);
void sc_json_free(sc_json_doc *doc);
/* Member of an object by key (the last one if repeated), or NULL. */
const sc_json *sc_json_get(const sc_json *obj, const char *key);
/* Typed look-ups with a default when the key is missing or of another type. */
double sc_json_get_number(const sc_json *obj, const char *key, double dflt);
const char *sc_json_get_string(const sc_json *obj, const char *key, const char *dflt);
int sc_json_get_bool(const sc_json *obj, const char *key, int dflt);

/* ---- io.c: .npy ---- */
/* An n-dimensional array as stored in a .npy file: C order, little-endian
 * in memory after loading. `data` is malloc'ed and owned by the array. */
typedef enum {
    SC_DT_F32,
    SC_DT_F64,
    SC_DT_I64,
    SC_DT_I32,
    SC_DT_U8,
    SC_DT_U16,
    SC_DT_F16,
    SC_DT_BF16
} sc_dtype;

#define SC_ARRAY_MAX_DIMS 8
typedef struct {
    sc_dtype dtype;
    int ndim;
    int64_t shape[SC_ARRAY_MAX_DIMS];
    void *data;
    size_t nbytes;
} sc_array;

size_t sc_dtype_size(sc_dtype dt);
const char *sc_dtype_name(sc_dtype dt);
int64_t sc_array_numel(const sc_array *a);
void sc_array_free(sc_array *a);
/* Read a .npy file (v1/v2/v3 header; f32 f64 i64 i32 u8 u16; C order). */
sc_status sc_npy_read(const char *path, sc_array *out, sc_err *err);
/* The same from bytes in memory (`what` names them in errors). Also reads
 * '<f2' (float16) and '|b1' (bool, as uint8 0/1). Big-endian data and
 * Fortran order are refused with SC_EUNSUPPORTED; the payload must be
 * exactly numel × itemsize bytes; at most SC_ARRAY_MAX_DIMS dims of at
 * most 2^31 each. */
sc_status sc_npy_parse(const uint8_t *bytes, size_t len, const char *what, sc_array *out, sc_err *err);
/* Write a .npy file (v1 header) atomically. */
sc_status sc_npy_write(const char *path, const sc_array *a, sc_err *err);
sc_status sc_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, sc_err *err);
/* Convert any numeric array to freshly malloc'ed float32 / int64 copies. */
sc_status sc_array_to_f32(const sc_array *a, float **out, sc_err *err);
sc_status sc_array_to_i64(const sc_array *a, int64_t **out, sc_err *err);

/* ---- io.c: safetensors ---- */
/* WEIGHT FILES. Every format a model's weights come in — a Hugging Face
 * directory (model.safetensors, or shards listed in
 * model.safetensors.index.json / pytorch_model.bin.index.json), a single
 * .safetensors file, or a PyTorch .pt/.bin zip checkpoint — opens as one
 * sc_weights: a table of named tensors sorted by name. Files are mapped
 * read-only; nothing is copied until a tensor is read, and every header,
 * offset and shape has been checked against the file before open returns.
 *
 *   sc_weights *w;
 *   if (sc_weights_open(&w, "models/clip", &err) != SC_OK) { puts(err.msg); ... }
 *   const sc_weight *t = sc_weights_find(w, "logit_scale");   // shape, dtype
 *   sc_tensor *x;
 *   sc_weights_get_f32(w, "visual_projection.weight", &weights_arena, &x, &err);
 *   sc_weights_close(w);   // tensors read into arenas stay valid
 */
typedef struct {
    const char *name;
    sc_dtype dtype;                     /* as stored; reads convert to float32 */
    int ndim;                           /* 0 for a scalar */
    int64_t shape[SC_ARRAY_MAX_DIMS];
    int64_t numel;
    /* Where the elements are: element (i0, .., ik) starts at byte
     * data + sc_dtype_size(dtype) · Σ ij·stride[j]. Contiguous in
     * safetensors; a PyTorch tensor may be a strided view of a larger
     * storage. Valid until sc_weights_close. */
    const uint8_t *data;
    int64_t stride[SC_ARRAY_MAX_DIMS];  /* in elements */
} sc_weight;

typedef struct sc_weights sc_weights;

/* Open a directory in Hugging Face layout or a single weight file (the
 * format is recognised from the bytes, not the extension). Legacy
 * (pre-1.6) PyTorch files and TorchScript archives fail with a message
 * saying how to convert them. */
sc_status sc_weights_open(sc_weights **out, const char *path, sc_err *err);
/* The same for one file's bytes in memory, which the caller keeps alive
 * (and unchanged) until sc_weights_close. `what` names them in errors. */
sc_status sc_weights_parse(sc_weights **out, const uint8_t *bytes, size_t len, const char *what, sc_err *err);
void sc_weights_close(sc_weights *w);
int sc_weights_count(const sc_weights *w);
const sc_weight *sc_weights_at(const sc_weights *w, int i);      /* by name order */
const sc_weight *sc_weights_find(const sc_weights *w, const char *name); /* or NULL */
const char *sc_weights_path(const sc_weights *w);
const char *sc_weights_format(const sc_weights *w); /* "safetensors" or "pytorch" */
/* Copy a tensor as float32 (F16/BF16/F64/integers converted, strides
 * gathered) into a fresh contiguous tensor of arena `a`, named `name`.
 * Fails when the name is missing, ndim > SC_MAX_DIMS, or `a` is full. */
sc_status sc_weights_get_f32(const sc_weights *w, const char *name, sc_arena *a, sc_tensor **out, sc_err *err);
/* Copy an integer tensor (I64/I32/U16/U8; e.g. position_ids) holding
 * exactly n elements into dst. */
sc_status sc_weights_read_i64(const sc_weights *w, const char *name, int64_t *dst, int64_t n, sc_err *err);
/* The numel elements of t as float32, in C order, into dst. */
void sc_weight_to_f32(const sc_weight *t, float *dst);
/* Zero-copy access: t's elements in the mapping when they are already
 * contiguous, aligned float32; NULL otherwise (then copy with the above). */
const float *sc_weight_f32_data(const sc_weight *t);

/* Write float32 tensors (contiguous or not) as a .safetensors file,
 * atomically: keys sorted by name, data in the same order, the header
 * padded with spaces to a multiple of 8 bytes and carrying
 * __metadata__ {"format": "pt"}, as the safetensors library writes it. */
sc_status sc_safetensors_write(const char *path, const char *const *names, const sc_tensor *const *tensors, int n,
                               sc_err *err);

/* ---- io.c: zip archives and PyTorch checkpoints ---- */
/* PyTorch checkpoints open through sc_weights_open above. What is read:
 * the zip written by torch.save since 1.6 (stored or deflated entries,
 * zip64, central directory cross-checked against every local header), and
 * its data.pkl through a pickle machine that knows only the opcodes and
 * globals a state dict needs (OrderedDict, _rebuild_tensor_v2, the typed
 * storages); any other global or opcode is refused by name and nothing in
 * the file is ever executed. Nested dicts ({"state_dict": {...}}) are
 * flattened with '.' between keys; non-tensor values (epoch numbers) are
 * skipped. */


/* ---- io.c: inflate ---- */
typedef enum { SC_INFLATE_RAW, SC_INFLATE_ZLIB, SC_INFLATE_GZIP } sc_inflate_format;
/* Decompress `in` into a malloc'ed buffer of at most max_out bytes (caller
 * frees). Checksums (Adler-32, CRC-32 + ISIZE) are verified; a stream that
 * would expand past max_out fails with SC_ENOMEM. */
sc_status sc_inflate(const uint8_t *in, size_t in_len, sc_inflate_format fmt, size_t max_out,
                     uint8_t **out, size_t *out_len, sc_err *err);
uint32_t sc_crc32(uint32_t crc, const uint8_t *p, size_t n);
uint32_t sc_adler32(uint32_t adler, const uint8_t *p, size_t n);

/* ---- io.c: images (PNG, JPEG, PPM) ---- */


/* ---- io.c: preprocessing ---- */


/* ---- io.c: tokenizers ---- */


/* ---- io.c: CSV ---- */


/* ---- io.c: SVG ---- */



/* ======================================================================== */
/* ---- nn.c: layers and models -------------------------------------------- */
/* ======================================================================== */

/* MODELS. Four transformer towers, exactly as the PyTorch code that trained
 * the published weights runs them (float32, batched):
 *   CLIP vision transformer (OpenAI CLIP, MONET)   images → (B, E)
 *   CLIP text transformer                          token ids → (B, E)
 *   Swin (Hugging Face SwinModel, MedCLIP)         images → (B, E)
 *   BERT (Hugging Face BertModel, MedCLIP)         token ids → (B, E)
 * paired into an sc_model: CLIP = ViT + CLIP text, MedCLIP = Swin + BERT.
 *
 *   sc_model *m;
 *   if (sc_model_load(&m, "models/monet", NULL, &err) != SC_OK) { ... }
 *   sc_tensor *img;                       // (B, E), in ctx.act
 *   sc_model_encode_image(m, &ctx, pixels, &img, NULL, &err);
 *   sc_model_free(m);
 *
 * Encoding runs without autograd in a workspace taken from ctx->act and
 * rewound before returning (only the output stays). The CLIP text tower
 * can also run on the tape (sc_clip_text_forward) so that gradients reach
 * learned prompt embeddings (CoOp). */

typedef enum {
    SC_ACT_QUICK_GELU,   /* x·σ(1.702x), OpenAI CLIP */
    SC_ACT_GELU          /* x·Φ(x) with erf, BERT and Swin ("gelu") */
} sc_act;

/* CLIP vision transformer: a (3, S, S) image cut into (S/P)² patches. */
typedef struct {
    int64_t image_size;   /* S */
    int64_t patch;        /* P */
    int64_t width;        /* C */
    int64_t layers;       /* L */
    int64_t heads;        /* H */
    int64_t mlp;          /* hidden width of the MLP, usually 4C */
    float eps;            /* LayerNorm ε */
    sc_act act;
} sc_vit_config;

/* CLIP text transformer. Pooling takes the row of the end-of-text token:
 * Hugging Face's rule is argmax of the ids when eos_token_id == 2 (the
 * legacy value of OpenAI-converted configs, also used here when it is
 * unknown, i.e. < 0), else the first position holding eos_token_id. */
typedef struct {
    int64_t vocab;        /* V */
    int64_t context;      /* positions: the longest T */
    int64_t width;        /* C */
    int64_t layers;       /* L */
    int64_t heads;        /* H */
    int64_t mlp;
    float eps;
    sc_act act;
    int64_t eos_token_id;
} sc_clip_text_config;

#define SC_SWIN_MAX_STAGES 8

/* Swin transformer (v1, Hugging Face SwinModel). Stage s has width
 * embed_dim·2^s; any image size runs (padding as Hugging Face does). */
typedef struct {
    int64_t image_size;   /* the size the model was trained at (informative) */
    int64_t patch;        /* P */
    int64_t embed_dim;    /* C of stage 0 */
    int64_t window;       /* M */
    int n_stages;
    int64_t depths[SC_SWIN_MAX_STAGES];
    int64_t heads[SC_SWIN_MAX_STAGES];
    float mlp_ratio;      /* MLP width = int(mlp_ratio · C) */
    float eps;            /* block and final LayerNorms (the embedding and
                             merging norms always use 1e-5, as in HF) */
    sc_act act;
} sc_swin_config;

/* BERT (Hugging Face BertModel, post-LN). */
typedef struct {
    int64_t vocab;
    int64_t max_positions;
    int64_t type_vocab;
    int64_t width;
    int64_t layers;
    int64_t heads;
    int64_t mlp;
    float eps;
    sc_act act;
} sc_bert_config;

typedef enum { SC_MODEL_CLIP, SC_MODEL_MEDCLIP } sc_model_kind;

typedef struct {
    sc_model_kind kind;
    int64_t embed_dim;            /* E: both towers project to it */
    sc_vit_config vision;         /* CLIP */
    sc_clip_text_config text;     /* CLIP */
    sc_swin_config swin;          /* MedCLIP */
    sc_bert_config bert;          /* MedCLIP */
} sc_model_config;

typedef struct sc_model sc_model;

/* Architectures of the published models (for benchmarks and tests):
 * "vit-l-14" (OpenAI CLIP ViT-L/14, MONET), "vit-b-32", "medclip"
 * (Swin-T + Bio_ClinicalBERT). 0 on success, -1 for an unknown name. */
int sc_model_config_preset(sc_model_config *cfg, const char *name);

/* Load weights: a Hugging Face directory (config.json + model.safetensors,
 * possibly sharded) or a single .safetensors/.pt/.bin file in Hugging Face,
 * OpenAI CLIP or MedCLIP layout. What shapes cannot tell (head counts, ε,
 * the EOT rule) comes from config.json in the directory, or from
 * config_path when given (it overrides). Every tensor of the file must be
 * used or be a known buffer; its shape must match. F32 weights are used in
 * place from the read-only mapping. */
sc_status sc_model_load(sc_model **out, const char *path, const char *config_path, sc_err *err);
/* A model of the given architecture with random weights (seeded). */
sc_status sc_model_random(sc_model **out, const sc_model_config *cfg, uint64_t seed, sc_err *err);
void sc_model_free(sc_model *m);
const sc_model_config *sc_model_get_config(const sc_model *m);
/* The stored logit_scale parameter (a log), and the multiplier the model
 * applies: exp(logit_scale) for CLIP, exp(clamp(logit_scale, 0, 4.6052))
 * for MedCLIP. */
float sc_model_logit_scale_raw(const sc_model *m);
float sc_model_logit_scale(const sc_model *m);
/* Weight bytes held by the model (float32). */
size_t sc_model_weight_bytes(const sc_model *m);

/* Named intermediates ("vision_layer0", "swin_stage1", ...; the names of
 * the golden fixtures) are passed to fn as they are computed. The tensor
 * is valid during the call only. */
typedef struct {
    void (*fn)(void *user, const sc_tensor *t);
    void *user;
} sc_taps;

/* Image embeddings (B, E), projected, not normalised, in ctx->act.
 * pixels (B, 3, H, W) as the model's preprocessing leaves them (MedCLIP
 * also takes (B, 1, H, W) grey images, repeated to 3 channels). taps may
 * be NULL. Fails on inputs of the wrong size. */
sc_status sc_model_encode_image(sc_model *m, sc_ctx *ctx, const sc_tensor *pixels, sc_tensor **embeds,
                                const sc_taps *taps, sc_err *err);
/* Text embeddings (B, E) from ids (B, T) and an optional attention mask
 * (B, T) of 0/1 (NULL = all ones; CLIP then uses only the causal mask, as
 * OpenAI does). Fails on ids outside the vocabulary or T too long. */
sc_status sc_model_encode_text(sc_model *m, sc_ctx *ctx, const int64_t *ids, const int64_t *mask, int64_t B,
                               int64_t T, sc_tensor **embeds, const sc_taps *taps, sc_err *err);
/* logits (N_img, N_txt) = scale · norm(img) · norm(txt)ᵀ with the model's
 * multiplier (sc_model_logit_scale); recorded on the tape when grad is on. */
sc_tensor *sc_model_logits(sc_ctx *ctx, const sc_model *m, sc_tensor *img, sc_tensor *txt);

/* -- the CLIP text tower on the autograd tape (CoOp) -- */
/* The token-embedding table (V, C) as a tensor that does not require grad. */
sc_tensor *sc_clip_token_embedding(sc_ctx *ctx, const sc_model *m);
/* Text embeddings (B, E) from token embeddings x (B, T, C), which may
 * require grad (the weights never do); ids (B, T) only choose the pooled
 * row. Positional embeddings are added here. */
sc_tensor *sc_clip_text_forward(sc_ctx *ctx, const sc_model *m, sc_tensor *x, const int64_t *ids);
/* The pooled position of one row of T ids, by the rule of the config. */
int64_t sc_clip_eot_index(const sc_clip_text_config *cfg, const int64_t *ids, int64_t T);

/* ======================================================================== */
/* ---- loss.c: SCALE losses and metrics ----------------------------------- */
/* ======================================================================== */

/* ======================================================================== */
/* ---- internal, may change ------------------------------------------------ */
/* ======================================================================== */

/* A tape node: the op that produced `out` from `in`, and how to send
 * out->grad back to the inputs. Ops in nn.c and loss.c define their own
 * nodes with sc__node_record. */
/* @book begin tape-node */
typedef void (*sc__backward_fn)(sc_ctx *ctx, sc_node *n);

struct sc_node {
    const char *op;               /* "matmul", "layernorm", ... */
    sc__backward_fn backward;
    sc_tensor *out;
    sc_tensor **in;               /* n_in inputs (NULL entries allowed) */
    int n_in;
    void *saved;                  /* op-specific state, in ctx->act */
    float fparam[4];
    int64_t iparam[4];
    sc_node *prev;
};
/* @book end tape-node */

/* Record a node for out = op(in...) when grad mode is on and any input
 * requires grad; marks out->requires_grad. Returns the node or NULL. */
sc_node *sc__node_record(sc_ctx *ctx, const char *op, sc__backward_fn bw,
                         sc_tensor *out, sc_tensor *const *in, int n_in);
/* The gradient buffer of t, allocated (zeroed) in ctx->grad on first use;
 * NULL when t does not require grad. */
float *sc__grad(sc_ctx *ctx, sc_tensor *t);
/* Allocate from ctx->act or abort with a message naming the arena. */
void *sc__act_alloc(sc_ctx *ctx, size_t bytes);
/* Force the GEMM kernel for tests and benchmarks: level 0 = portable, 1 =
 * AVX2/FMA (clamped to what this CPU runs); -1 = automatic again, which
 * reads SCALE_NO_SIMD anew. Returns the level now in use. */
int sc__gemm_force(int level);

#ifdef __cplusplus
}
#endif
#endif /* SCALE_H */
