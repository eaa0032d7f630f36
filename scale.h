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

/* ---- scale.c: synthetic datasets ---- */
/* Look-alikes of the two datasets of the paper, written in the real
 * releases' layouts so that the real readers load them (book/15):
 *
 * Derm7p: DIR/release_v0/{README.txt, meta/meta.csv (19 columns),
 * meta/{train,valid,test}_indexes.csv, images/<folder>/<file>}. Diagnoses
 * and every categorical column follow the real release's counts per
 * diagnosis group (exactly at n = 1011), seven_point_score is the 7-point
 * sum, and each criterion value is drawn visibly into the dermoscopic image
 * (the `derm` column); the `clinic` image shows the same lesion zoomed out
 * and blurred. Deterministic: the same options give the same bytes. */
typedef struct {
    int n;            /* cases; 1011 = the real release */
    uint64_t seed;
    int size;         /* side of each square image in pixels (192) */
    int png;          /* 0: JPEG under .jpg/.JPG names, as released; 1: PNG under .png/.PNG */
    int quality;      /* JPEG quality (92) */
    int images;       /* 0: only the metadata (the same plan as with images) */
    void (*progress)(void *user, int done, int total); /* after each batch of images, or NULL */
    void *progress_user;
} sc_synth_derm7p_options;

void sc_synth_derm7p_defaults(sc_synth_derm7p_options *opt);
sc_status sc_synth_derm7p(const char *dir, const sc_synth_derm7p_options *opt, sc_err *err);
/* One lesion per criterion value (rows: the seven criteria; columns: their
 * values, absent first), tile x tile pixels each; JPEG when the path ends
 * in .jpg, else PNG. */
sc_status sc_synth_derm7p_contact_sheet(const char *path, int tile, uint64_t seed, sc_err *err);

/* PadChest-GR: DIR/{README.txt, grounded_reports_20240819.json,
 * master_table.csv, PadChest_GR/<ImageID>}: 16-bit grey chest radiographs
 * with atelectasis, cardiomegaly, consolidation and pleural effusion drawn
 * at the locations of the paper's tree (data/padchest-gr.hier), one to
 * three per abnormal study at the tree's relative frequencies, plus normal
 * studies; bilingual report sentences naming finding and location, boxes
 * around what was drawn; a patient-disjoint 70/10/20 split. */
typedef struct {
    int n;               /* studies (748, the paper's patients after preprocessing) */
    uint64_t seed;
    int size;            /* side of each square image in pixels (256) */
    double normal_share; /* studies without any of the four findings (0.25) */
    int images;          /* 0: only the reports and the master table */
    void (*progress)(void *user, int done, int total);
    void *progress_user;
} sc_synth_padchest_options;

void sc_synth_padchest_defaults(sc_synth_padchest_options *opt);
sc_status sc_synth_padchest_gr(const char *dir, const sc_synth_padchest_options *opt, sc_err *err);
/* Eight radiographs, one finding each with its boxes outlined (8-bit). */
sc_status sc_synth_padchest_contact_sheet(const char *path, int tile, uint64_t seed, sc_err *err);

/* ======================================================================== */
/* ---- tensor.c: tensors, threads, GEMM, ops, autograd, optimizers --------- */
/* ======================================================================== */

#define SC_MAX_DIMS 4
#define SC_NAME_MAX 64

typedef struct sc_node sc_node;

/* A float32 view with up to 4 dimensions. `data` and `grad` point into
 * arenas; the tensor owns neither. Strides are in elements. */
/* @book begin tensor-struct */
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
/* @book end tensor-struct */

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
/* Number of threads parallel work uses (the caller included): the value
 * set by sc_set_threads, else SCALE_THREADS (when > 0), else the online
 * CPUs; at most 256. */
int sc_threads(void);
/* Override the thread count at run time; n <= 0 returns to the default. */
void sc_set_threads(int n);
/* Run fn(arg, i) for i in [0, n) on the thread pool (created on first use,
 * then reused); returns when all are done. Work items must write disjoint
 * memory, which makes results independent of scheduling. Called from
 * inside a task, it runs serially on the calling thread. */
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
/* sc_optim_step then sc_optim_zero_grad, in one pass over memory: the
 * gradients are left at zero, ready for the next backward. */
void sc_optim_step_zero_grad(sc_optim *o);
void sc_optim_free(sc_optim *o);
/* Learning rate at `step` (0-based) of `total` steps: a constant warm-up at
 * warmup_lr for the first warmup_steps (Dassl's "constant" warm-up, used by
 * CoOp), then cosine annealing from base_lr towards 0 over the remaining
 * steps, as torch.optim.lr_scheduler.CosineAnnealingLR with eta_min = 0. */
float sc_lr_cosine(float base_lr, int64_t step, int64_t total, int64_t warmup_steps, float warmup_lr);
/* Learning rate at `step` of `total` with a linear warm-up over the first
 * warmup_steps steps, then cosine annealing to 0 (CLIP pretraining). */
float sc_lr_warmup_cosine(float base_lr, int64_t step, int64_t total, int64_t warmup_steps);

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

/* `what` names the source in error messages (usually the file path), which
 * read "WHAT: line L, column C: what is wrong". Strict RFC 8259: invalid
 * UTF-8, lone surrogates, comments, trailing commas, NaN, numbers out of
 * double range, nesting deeper than SC_JSON_MAX_DEPTH and data after the
 * value are errors; a leading UTF-8 byte order mark is skipped. `text`
 * need not be NUL-terminated and is not referenced after the call. On
 * failure doc is left empty (sc_json_free on it is harmless). */
sc_status sc_json_parse(sc_json_doc *doc, const char *text, size_t len, const char *what, sc_err *err);
sc_status sc_json_load(sc_json_doc *doc, const char *path, size_t max_bytes, sc_err *err);
void sc_json_free(sc_json_doc *doc);
/* Member of an object by key (the last one if repeated), or NULL. A linear
 * scan: fine for configs; index large objects (vocab.json) yourself. */
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
/* A decoded image, samples interleaved row by row, top row first:
 *   pixels   (height, width, channels) uint8: what Pillow hands back. For a
 *            16-bit file this is the high byte of every sample (Pillow's
 *            rule for 16-bit RGB, LA and RGBA PNGs).
 *   pixels16 (height, width, channels) uint16: the full samples of a 16-bit
 *            file (bits == 16), else NULL.
 *   index    (height, width) uint8: palette indices of a palette PNG (Pillow
 *            mode P), else NULL; `pixels` then holds the expansion through
 *            the palette: RGB, or RGBA when the file has a tRNS chunk.
 * channels: 1 grey (L), 2 grey+alpha (LA), 3 RGB, 4 RGBA. All buffers are
 * malloc'ed and owned by the image: release them with sc_image_free. */
typedef struct {
    int width, height;
    int channels;             /* 1..4 */
    int bits;                 /* 8 or 16: sample depth of the source */
    uint8_t *pixels;          /* (height, width, channels) */
    uint16_t *pixels16;       /* (height, width, channels) or NULL */
    uint8_t *index;           /* (height, width) or NULL */
    int palette_size;         /* entries in palette; 0 unless index != NULL */
    uint8_t palette[256][4];  /* RGBA, alpha 255 where tRNS gives none */
    int bilevel;              /* 1-bit grey (Pillow mode 1): pixels are 0 or 255 */
} sc_image;

/* Caps on what a decoder accepts from a file (stb_image's lesson: check
 * sizes before allocating). A side of 2^24 is PNG's practical bound; the
 * pixel cap keeps one decoded image under about 1.3 GB even at 16-bit RGBA. */
#define SC_IMAGE_MAX_SIDE (1 << 24)
#define SC_IMAGE_MAX_PIXELS ((int64_t)1 << 26)
#define SC_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

/* Decode by signature (PNG, JPEG, binary PGM/PPM). `what` names the source
 * in error messages. On failure the image is left empty. */
sc_status sc_image_load(const char *path, sc_image *img, sc_err *err);
sc_status sc_image_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err);
void sc_image_free(sc_image *img);

/* PNG: every colour type and bit depth, palette + tRNS, Adam7, CRCs checked.
 * Grey at 1, 2 or 4 bits is scaled to 0..255 in `pixels` (×255, ×85, ×17). */
sc_status sc_png_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err);
/* Baseline and progressive Huffman JPEG, 8-bit, 1 or 3 components, with
 * libjpeg-turbo's default arithmetic (islow IDCT, fancy upsampling), so the
 * pixels equal Pillow's. Arithmetic coding, 12-bit, lossless and CMYK are
 * refused with SC_EUNSUPPORTED. */
sc_status sc_jpeg_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err);
/* Binary PGM (P5) and PPM (P6) with maxval 255 or 65535. */
sc_status sc_pnm_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err);

/* PNG writer for 1..4 channels at 8 bits (pixels) or 16 bits (pixels16):
 * per-row adaptive filters and a small LZ77 + fixed-Huffman deflate. The
 * palette is not written (a palette image is saved as its expansion). */
sc_status sc_png_encode(const sc_image *img, uint8_t **out, size_t *out_len, sc_err *err);
sc_status sc_png_write(const char *path, const sc_image *img, sc_err *err);
/* P5 (1 channel) or P6 (3 channels), maxval 255 or, for 16-bit images, 65535. */
sc_status sc_pnm_write(const char *path, const sc_image *img, sc_err *err);
/* Baseline JPEG writer for 8-bit grey or RGB images: 4:4:4 (no chroma
 * subsampling), quality 1..100 scaling the ITU T.81 annex K tables as
 * libjpeg does (Pillow's quality), the annex's standard Huffman tables, a
 * JFIF header. Integer arithmetic only, so the bytes are the same on every
 * platform. */
sc_status sc_jpeg_encode(const sc_image *img, int quality, uint8_t **out, size_t *out_len, sc_err *err);
sc_status sc_jpeg_write(const char *path, const sc_image *img, int quality, sc_err *err);

/* ---- io.c: preprocessing ---- */
/* Image → model input, reproducing the Python pipelines of the original
 * models to the last bit where the MANIFEST of tests/golden/io says so.
 * The 8-bit image operations below follow Pillow 9.4. */
typedef enum { SC_RESAMPLE_NEAREST, SC_RESAMPLE_BILINEAR, SC_RESAMPLE_BICUBIC } sc_resample;

/* Pillow's Image.resize: separable fixed-point convolution (horizontal pass
 * first, uint8 in between) with support widened by the scale factor when
 * shrinking (antialiasing); bicubic a = -0.5. LA/RGBA are resized with
 * premultiplied alpha; palette images always use nearest neighbour (as
 * Pillow does for mode P), keeping their index plane, and so do bilevel
 * (1-bit) images, as Pillow does for mode 1. 8-bit images only. */
sc_status sc_image_resize(const sc_image *src, int width, int height, sc_resample filter, sc_image *dst, sc_err *err);
/* The rectangle (left, top, width, height), which must lie inside src. */
sc_status sc_image_crop(const sc_image *src, int left, int top, int width, int height, sc_image *dst, sc_err *err);
/* Pillow's convert('L') (channels 1: luma (19595 R + 38470 G + 7471 B +
 * 2^15) >> 16, alpha dropped) or convert('RGB') (channels 3: grey
 * replicated, alpha dropped). The result has no palette. */
sc_status sc_image_convert(const sc_image *src, int channels, sc_image *dst, sc_err *err);
/* 16-bit → 8-bit by this library's documented rule (book/08-images.md):
 * grey is stretched min–max to 0..255 with rounding (a constant image
 * becomes 0); colour and alpha samples keep their high byte, as Pillow
 * does. An 8-bit image is copied. */
sc_status sc_image_to_8bit(const sc_image *src, sc_image *dst, sc_err *err);

/* Centre-crop offset of `crop` out of `size` under each library's rule:
 *   SC_CROP_TORCHVISION  int(round((size - crop) / 2.0)), halves to even
 *   SC_CROP_HF           (size - crop) // 2 (transformers' center_crop)
 *   SC_CROP_HF_LEGACY    int((size - crop + 1) * 0.5) (older
 *                        CLIPFeatureExtractor, as MedCLIP pins) */
typedef enum { SC_CROP_TORCHVISION, SC_CROP_HF, SC_CROP_HF_LEGACY } sc_crop_rule;
int sc_center_crop_offset(int size, int crop, sc_crop_rule rule);

/* How 0..255 becomes 0..1 (the float32 results differ in the last bit):
 *   SC_RESCALE_DIV255   x / 255.0f (torchvision ToTensor)
 *   SC_RESCALE_MUL_F32  x · float(1/255) (numpy float32, transformers ≤ 4.24)
 *   SC_RESCALE_MUL_F64  float(x · rescale_factor) in double (transformers now) */
typedef enum { SC_RESCALE_DIV255, SC_RESCALE_MUL_F32, SC_RESCALE_MUL_F64 } sc_rescale_rule;

/* A preprocessing pipeline. The named ones:
 *   clip          OpenAI CLIP's _transform(224): shorter side → 224 bicubic,
 *                 torchvision centre crop, RGB, /255, CLIP mean/std
 *   monet         the same with ImageNet mean/std (MONET's training stats)
 *   medclip       MedCLIPProcessor: pad to a black square L canvas, bicubic
 *                 → 224, x·(1/255) in float32, scalar mean/std, 1 channel
 *   medclip-eval  MedCLIP's evaluation datasets: pad, bilinear
 *                 Resize((224, 224)), ToTensor, scalar mean/std */
typedef struct {
    char name[32];
    int size;                 /* resize target: the shorter side, or both sides if resize_square */
    int resize_square;        /* 1: resize to (size, size) whatever the aspect */
    sc_resample resample;
    int crop;                 /* centre crop side, 0 = none (then resize_square must be 1) */
    sc_crop_rule crop_rule;
    int pad_square;           /* MedCLIP: paste centred on a black L canvas of side max(size, W, H) */
    int channels;             /* 3 RGB or 1 grey */
    sc_rescale_rule rescale;
    double rescale_factor;    /* SC_RESCALE_MUL_F64 only; 1/255 unless a config says otherwise */
    float mean[3], std[3];
} sc_pipeline;

sc_status sc_pipeline_named(const char *name, sc_pipeline *p, sc_err *err);
/* The pipeline for a model directory. The base is `name` when given, else
 * "medclip" when DIR/config.json says model_type "medclip", else "clip";
 * vision_config.image_size (a model trained at another resolution) replaces
 * 224. DIR/preprocessor_config.json, when present, then overrides size,
 * crop_size, resample, do_center_crop, do_normalize, image_mean, image_std
 * and rescale_factor, and when no name was given selects current
 * transformers' rules (SC_CROP_HF, SC_RESCALE_MUL_F64). */
sc_status sc_pipeline_for_model(const char *dir, const char *name, sc_pipeline *p, sc_err *err);
/* Side of the square output of p. */
int sc_pipeline_side(const sc_pipeline *p);
/* The 8-bit image after resize, crop and colour conversion: (side, side,
 * channels), what ToTensor would see. */
sc_status sc_pipeline_u8(const sc_pipeline *p, const sc_image *img, sc_image *out, sc_err *err);
/* The model input: out (channels, side, side) float32, normalised. */
sc_status sc_pipeline_run(const sc_pipeline *p, const sc_image *img, float *out, sc_err *err);

/* ---- io.c: tokenizers ---- */
/* Text → token ids exactly as the models' own tokenizers:
 *   SC_TOK_BPE        OpenAI CLIP's byte-level BPE (clip.tokenize): MONET,
 *                     OpenAI CLIP. Files: merges.txt (+ vocab.json) from
 *                     Hugging Face, or OpenAI's bpe_simple_vocab_16e6.txt.gz.
 *   SC_TOK_WORDPIECE  BERT WordPiece as Hugging Face's BertTokenizerFast:
 *                     MedCLIP's Bio_ClinicalBERT. Files: vocab.txt
 *                     (+ tokenizer_config.json).
 * A text becomes one row of T = max_length ids: begin token, content,
 * end token, padding; longer texts are truncated keeping the end token.
 * Texts must be valid UTF-8. A tokenizer keeps scratch memory and a cache,
 * so encoding is not thread-safe: use one tokenizer per thread. */
typedef enum { SC_TOK_BPE, SC_TOK_WORDPIECE } sc_tok_kind;
typedef struct sc_tokenizer sc_tokenizer;

typedef struct {
    int max_length;     /* T: ids per row including the two specials (default 77) */
    int64_t pad_id;     /* -1 = default: 0 for BPE (OpenAI's clip.tokenize; Hugging
                           Face's CLIPTokenizer pads with <|endoftext|>), [PAD] for
                           WordPiece */
    int lower_case;     /* WordPiece: -1 = do_lower_case of tokenizer_config.json,
                           true when absent; 0/1 forces it. BPE always lower-cases. */
    int strip_accents;  /* WordPiece: -1 = strip_accents of the config, else as
                           lower_case; 0/1 forces it. */
} sc_tok_options;

#define SC_TOK_MAX_LENGTH 65536      /* largest max_length */
#define SC_TOK_MAX_TEXT (1 << 24)    /* bytes in one text */

sc_tok_options sc_tok_defaults(void);
/* Load from a model directory; the kind follows the files present:
 * merges.txt (+ vocab.json) or bpe_simple_vocab_16e6.txt.gz → BPE,
 * vocab.txt (+ tokenizer_config.json) → WordPiece. opt may be NULL. */
sc_status sc_tokenizer_load(sc_tokenizer **tok, const char *dir, const sc_tok_options *opt, sc_err *err);
/* From named files. merges_path may be gzip-compressed (OpenAI's .gz: its
 * first 48894 merges are used, as OpenAI does); vocab_json_path may be
 * NULL (the vocabulary is then built from the merges, as OpenAI does). */
sc_status sc_tokenizer_load_bpe(sc_tokenizer **tok, const char *merges_path, const char *vocab_json_path,
                                const sc_tok_options *opt, sc_err *err);
sc_status sc_tokenizer_load_wordpiece(sc_tokenizer **tok, const char *vocab_txt_path, const char *config_path,
                                      const sc_tok_options *opt, sc_err *err);
/* From memory: merges text (max_merges = -1 for all lines) and an optional
 * parsed vocab.json object; or vocab.txt text. `what` names the source in
 * error messages. */
sc_status sc_tokenizer_parse_bpe(sc_tokenizer **tok, const char *merges, size_t len, int64_t max_merges,
                                 const sc_json *vocab_json, const char *what, const sc_tok_options *opt,
                                 sc_err *err);
sc_status sc_tokenizer_parse_wordpiece(sc_tokenizer **tok, const char *vocab_txt, size_t len, const char *what,
                                       const sc_tok_options *opt, sc_err *err);
void sc_tokenizer_free(sc_tokenizer *tok);

sc_tok_kind sc_tokenizer_kind(const sc_tokenizer *tok);
int sc_tokenizer_max_length(const sc_tokenizer *tok);          /* T */
int64_t sc_tokenizer_vocab_size(const sc_tokenizer *tok);      /* V */
/* The string of token `id` (BPE: in GPT-2's byte-to-unicode alphabet, e.g.
 * "melanoma</w>"), or NULL when out of range; and the id of a string, or -1. */
const char *sc_tokenizer_token(const sc_tokenizer *tok, int64_t id);
int64_t sc_tokenizer_id(const sc_tokenizer *tok, const char *token);

/* One text of len bytes → ids (T) and mask (T, may be NULL; 1 on real
 * tokens). *n_tokens = real tokens in the row, *truncated = 1 when the
 * text did not fit (either may be NULL). Fails on invalid UTF-8. */
sc_status sc_tokenizer_encode(sc_tokenizer *tok, const char *text, size_t len, int64_t *ids, int64_t *mask,
                              int *n_tokens, int *truncated, sc_err *err);
/* B NUL-terminated texts → ids (B, T) and mask (B, T) (mask may be NULL).
 * The first L columns, L = the longest row's token count, are what Hugging
 * Face returns with padding=True (MedCLIP's call; its text pooling averages
 * over padded positions too, so L matters there). */
sc_status sc_tokenizer_encode_batch(sc_tokenizer *tok, const char *const *texts, int64_t B, int64_t *ids,
                                    int64_t *mask, sc_err *err);
/* Print how one text is tokenized: the cleaned or normalized text, every
 * BPE merge of every word (rank, pair, symbols after it) or every WordPiece
 * split, then the row's ids and token strings. For the book and debugging. */
sc_status sc_tokenizer_explain(sc_tokenizer *tok, const char *text, size_t len, FILE *out, sc_err *err);

/* Learn a small byte-level BPE vocabulary from n NUL-terminated texts and
 * write it as Hugging Face's CLIP files DIR/merges.txt and DIR/vocab.json:
 * the texts are cleaned and pre-tokenised as the tokenizer does, then the
 * most frequent adjacent pair (ties: the lower ids) is merged until
 * max_merges merges or until every word is one token. The vocabulary
 * follows OpenAI's layout: 256 byte tokens, the same with </w>, one token
 * per new merged string, <|startoftext|>, <|endoftext|> (the largest id).
 * *n_merges (may be NULL) receives the merges learnt. */
sc_status sc_bpe_learn(const char *const *texts, int64_t n, int max_merges, const char *dir, int *n_merges,
                       sc_err *err);


/* ---- io.c: CSV ---- */
/* RFC 4180 CSV: fields separated by a delimiter (',' unless set), records
 * ended by CRLF, LF or a lone CR, the last one optionally without a line
 * end. A field in double quotes may hold delimiters, quotes (doubled: "")
 * and line ends. A leading UTF-8 byte-order mark is skipped; empty lines
 * are skipped (write a lone empty field as "" to keep it). The first
 * record is the header and names the columns. Refused with SC_EFORMAT and
 * the file and line in the message: a quote inside an unquoted field, text
 * after a closing quote, an unterminated quote, a NUL byte, a record whose
 * field count differs from the header's (unless ragged_ok), no header. */
typedef struct {
    char **field;       /* (n_fields) decoded, NUL-terminated */
    int n_fields;
    int64_t line;       /* 1-based line on which the record starts */
} sc_csv_row;

typedef struct {
    sc_csv_row header;
    sc_csv_row *rows;   /* (n_rows) the records after the header */
    int64_t n_rows;
    int n_cols;         /* fields in the header */
    char what[256];     /* the file name used in error messages */
    char *text;         /* owned: every decoded field, back to back */
    char **fields;      /* owned: pointers into text, record after record */
} sc_csv;

/* Caps against hostile or runaway files; a 0 member takes the default. */
#define SC_CSV_MAX_FILE_BYTES ((size_t)1 << 30)
#define SC_CSV_MAX_ROWS ((int64_t)1 << 24)
#define SC_CSV_MAX_FIELDS 4096            /* per record */
#define SC_CSV_MAX_FIELD_BYTES ((size_t)1 << 20)
typedef struct {
    char delimiter;         /* ',' when 0 */
    int ragged_ok;          /* 1 = records may have any field count */
    size_t max_file_bytes;
    int64_t max_rows;       /* data records, not counting the header */
    int max_fields;
    size_t max_field_bytes;
} sc_csv_options;

/* `opt` may be NULL (all defaults). On failure *csv is empty and safe to
 * free. `what` names the text in error messages. */
sc_status sc_csv_parse(sc_csv *csv, const char *text, size_t len, const char *what,
                       const sc_csv_options *opt, sc_err *err);
sc_status sc_csv_load(sc_csv *csv, const char *path, const sc_csv_options *opt, sc_err *err);
void sc_csv_free(sc_csv *csv);
/* Index of the first header field equal to name, or -1. */
int sc_csv_column(const sc_csv *csv, const char *name);
/* The same, failing with "FILE:LINE: no column 'NAME' in the header" when
 * the column is missing or appears more than once. */
sc_status sc_csv_require_column(const sc_csv *csv, const char *name, int *col, sc_err *err);
/* Field `col` of data record `row`; "" when a ragged record is shorter. */
const char *sc_csv_get(const sc_csv *csv, int64_t row, int col);
/* Whole-field numbers: "FILE:LINE: column NAME: 'x' is not an integer". */
sc_status sc_csv_get_int(const sc_csv *csv, int64_t row, int col, int64_t *out, sc_err *err);
sc_status sc_csv_get_double(const sc_csv *csv, int64_t row, int col, double *out, sc_err *err);
/* Fail with "FILE:LINE: column NAME: " followed by the formatted reason,
 * for readers that find a bad value in a field (col < 0: no column part). */
sc_status sc_csv_fail(sc_err *err, sc_status code, const sc_csv *csv, int64_t row, int col,
                      const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* A growable text buffer for writers (CSV, SVG, Markdown reports). A
 * failed allocation is remembered in `failed` and later appends are
 * ignored, so writers append freely and check once, at save. `data` is
 * NUL-terminated whenever it is not NULL. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} sc_text;

void sc_text_init(sc_text *t);
void sc_text_put(sc_text *t, const char *s, size_t n);
void sc_text_puts(sc_text *t, const char *s);
void sc_text_printf(sc_text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Write the text to path with sc_write_file_atomic; SC_ENOMEM when an
 * append had failed (nothing is written then). */
sc_status sc_text_save(const sc_text *t, const char *path, sc_err *err);
void sc_text_free(sc_text *t);

/* A CSV writer: records accumulate in memory and reach the disk at once
 * through sc_write_file_atomic, so a failed run leaves no partial file.
 * Fields are quoted only when they must be (delimiter, quote, CR or LF
 * inside, or a record's only field empty); records end with LF. */
typedef struct {
    sc_text out;
    int fields_in_row;  /* fields written to the current record */
    char delimiter;     /* ',' after init; may be changed before writing */
} sc_csv_writer;

void sc_csv_writer_init(sc_csv_writer *w);
void sc_csv_put(sc_csv_writer *w, const char *field);
void sc_csv_putf(sc_csv_writer *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void sc_csv_end_row(sc_csv_writer *w);
sc_status sc_csv_writer_save(sc_csv_writer *w, const char *path, sc_err *err);
void sc_csv_writer_free(sc_csv_writer *w);

/* ---- io.c: JSON writer (section 2; declared here because it uses sc_text) ---- */
/* Values are appended in document order and the writer places the commas,
 * colons and, with indent > 0, new lines and indentation:
 *
 *   sc_json_writer w;  sc_json_writer_init(&w, 2);
 *   sc_json_begin_object(&w);
 *   sc_json_put_key(&w, "labels");  sc_json_begin_array(&w);
 *   sc_json_put_string(&w, "pleural effusion");  sc_json_end_array(&w);
 *   sc_json_end_object(&w);
 *   sc_json_writer_save(&w, "out.json", &err);  sc_json_writer_free(&w);
 *
 * Strings are escaped as RFC 8259 requires (quote, backslash, control
 * characters); UTF-8 passes through and invalid bytes become U+FFFD.
 * Numbers are written with the fewest digits that read back exactly; NaN
 * and infinities become null. Misuse (a value in an object without a key,
 * unbalanced ends, saving an unfinished document) is a bug and stops the
 * program through SC_ASSERT. The file is written atomically. */
typedef struct {
    sc_text out;
    int indent;                          /* spaces per level; 0 = one line */
    int depth;                           /* open containers */
    char in_object[SC_JSON_MAX_DEPTH];   /* container i is an object */
    char has_member[SC_JSON_MAX_DEPTH];  /* container i has a member already */
    int after_key;                       /* a key waits for its value */
    int done;                            /* the top-level value is complete */
} sc_json_writer;

void sc_json_writer_init(sc_json_writer *w, int indent);
void sc_json_begin_object(sc_json_writer *w);
void sc_json_end_object(sc_json_writer *w);
void sc_json_begin_array(sc_json_writer *w);
void sc_json_end_array(sc_json_writer *w);
void sc_json_put_key(sc_json_writer *w, const char *key);
void sc_json_put_string(sc_json_writer *w, const char *s);
void sc_json_put_number(sc_json_writer *w, double x);
void sc_json_put_int(sc_json_writer *w, int64_t x);
void sc_json_put_bool(sc_json_writer *w, int b);
void sc_json_put_null(sc_json_writer *w);
sc_status sc_json_writer_save(sc_json_writer *w, const char *path, sc_err *err);
void sc_json_writer_free(sc_json_writer *w);


/* ---- io.c: SVG ---- */
/* Hand-written SVG charts for the experiment reports (the paper's Fig. 2–4),
 * readable in any browser: line charts with error bars, grids of them, and
 * scatter plots of 2-D maps. Text is escaped for XML (invalid UTF-8 and
 * control characters become U+FFFD), colours come from Okabe and Ito's
 * colour-blind-safe palette (a marker shape changes as well, so series
 * stay apart in grey print), and files are written atomically.
 *
 * Missing values are not errors: a point whose x or y is NaN or infinite,
 * or whose x is not positive on a log axis, is left out and breaks its line
 * in two; a NaN, infinite or negative error is not drawn; a series with no
 * point left keeps its legend entry, marked "(no data)"; a chart with no
 * point at all still gets its axes, over [0, 1]. Points are joined in the
 * order given. */
#define SC_PLOT_PALETTE 8 /* colours before they repeat (with a new marker) */

typedef struct {
    const char *name;     /* legend label */
    const double *x;      /* (n) */
    const double *y;      /* (n) the mean over seeds, say */
    const double *err;    /* (n) one standard deviation, or NULL */
    int n;
    int color;            /* palette index; -1 = the series' position */
    int dashed;           /* 1 = dashed line (e.g. a follow-up variant) */
} sc_plot_series;

typedef struct {
    const char *title;         /* NULL = none */
    const char *x_label;
    const char *y_label;
    int x_log;                 /* 1 = logarithmic x axis */
    double y_min, y_max;       /* fixed y range; equal (e.g. both 0) = from the data */
    const double *x_ticks;     /* (n_x_ticks) tick positions, or NULL = automatic */
    int n_x_ticks;
    const sc_plot_series *series; /* (n_series) */
    int n_series;
} sc_line_chart;

/* One chart with its legend below it. */
sc_status sc_svg_line_chart(const char *path, const sc_line_chart *chart, sc_err *err);
/* A grid of charts, n_cols across (one per metric, like the paper's
 * figures), under an overall title (NULL = none), with one legend below
 * taken from the first panel: the panels should show the same methods. */
sc_status sc_svg_line_panels(const char *path, const char *title, const sc_line_chart *panels, int n_panels,
                             int n_cols, sc_err *err);

typedef struct {
    const char *title;
    const double *xy;          /* (n, 2) */
    const int *category;       /* (n) each in [0, n_categories) */
    int64_t n;
} sc_scatter_panel;

/* Scatter plots side by side (Fig. 4: zero-shot next to SCALE), one colour
 * and marker per category, with a shared legend. Both axes of a panel use
 * one scale, so distances in the map are not distorted; the axes carry no
 * numbers because t-SNE coordinates have no units. A category outside
 * [0, n_categories) fails with SC_ERANGE. */
sc_status sc_svg_scatter(const char *path, const char *title, const sc_scatter_panel *panels, int n_panels,
                         const char *const *category_names, int n_categories, sc_err *err);

/* ---- io.c: hashing ---- */
/* SHA-256 (FIPS 180-4), for the fingerprints of the embedding cache:
 *
 *   sc_sha256 s; sc_sha256_init(&s);
 *   sc_sha256_update(&s, "abc", 3);
 *   uint8_t d[32]; sc_sha256_final(&s, d);   // ba7816bf...f20015ad
 */
typedef struct {
    uint32_t h[8];        /* the chaining state */
    uint64_t bytes;       /* message bytes so far */
    uint8_t buf[64];      /* a block being filled */
    size_t fill;          /* bytes in buf */
} sc_sha256;

void sc_sha256_init(sc_sha256 *s);
void sc_sha256_update(sc_sha256 *s, const void *data, size_t n);
/* The 32-byte digest; s must be initialised again before reuse. */
void sc_sha256_final(sc_sha256 *s, uint8_t digest[32]);
/* 64 lower-case hex digits and a NUL. */
void sc_sha256_hex(const uint8_t digest[32], char hex[65]);
/* Hash a whole file, read in 1 MiB pieces; *bytes (may be NULL) gets its size. */
sc_status sc_sha256_file(const char *path, char hex[65], int64_t *bytes, sc_err *err);



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
 * rewound before returning (only the output stays). Both CLIP towers can
 * also run on the tape, sharing one transformer block: the text tower so
 * that gradients reach learned prompt embeddings (CoOp), both towers so
 * that a model made with sc_model_new_trainable can be pretrained from
 * scratch (scale pretrain). MedCLIP's BERT text tower runs on the tape
 * too, for CoOp; its Swin image tower does not. */

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
/* The whole text tower from ids (B, T): token embeddings looked up on the
 * tape, then sc_clip_text_forward. */
sc_tensor *sc_clip_text_forward_ids(sc_ctx *ctx, const sc_model *m, const int64_t *ids, int64_t B, int64_t T);
/* Image embeddings (B, E) on the tape from pixels (B, 3, S, S): the vision
 * tower of sc_model_encode_image op by op, through the same transformer
 * block as the text tower (without its causal mask). */
sc_tensor *sc_clip_image_forward(sc_ctx *ctx, const sc_model *m, sc_tensor *pixels);

/* -- MedCLIP's BERT text tower on the autograd tape (CoOp) -- */
/* The word-embedding table (V, C) as a tensor that does not require grad. */
sc_tensor *sc_medclip_word_embedding(sc_ctx *ctx, const sc_model *m);
/* Text embeddings (B, E) from word embeddings x (B, T, C), which may
 * require grad (the weights never do), and the attention mask (B, T) of
 * 0/1 (NULL = all ones): the tower of sc_model_encode_text op by op —
 * token type 0 and positions added here, post-LN blocks through the same
 * attention op as CLIP, MedCLIP's mean over all T positions of hidden
 * states 1, 2 and L (padding included), the projection. */
sc_tensor *sc_medclip_text_forward(sc_ctx *ctx, const sc_model *m, sc_tensor *x, const int64_t *mask);

/* -- the parameter table; training a CLIP model (scale pretrain) -- */
/* A CLIP model with random weights to train from scratch: every parameter
 * an sc_param_new tensor with a gradient (LayerNorms at the identity,
 * biases 0, matrices uniform in ±1/√fan_in). On the tape (the functions
 * above) gradients then reach the parameters themselves. */
sc_status sc_model_new_trainable(sc_model **out, const sc_model_config *cfg, uint64_t seed, sc_err *err);
int sc_model_is_trainable(const sc_model *m);
/* Every parameter, in the order of the weight tables (nn.c 7e), as a tensor
 * over the model's storage; *n receives the count. The tensors of a loaded
 * model are read-only views (the file may be mapped read-only). */
sc_tensor *const *sc_model_params(const sc_model *m, int *n);
/* Hugging Face key of parameter i ("vision_model.pre_layrnorm.weight"). */
const char *sc_model_param_key(const sc_model *m, int i);
/* The parameter with that key, or NULL. */
sc_tensor *sc_model_param_find(const sc_model *m, const char *key);
/* Write a CLIP model as a Hugging Face directory: config.json (CLIPConfig)
 * and model.safetensors (float32, Hugging Face keys), both atomically;
 * DIR is created when missing. sc_model_load reads it back. */
sc_status sc_model_save(const sc_model *m, const char *dir, sc_err *err);

/* ---- nn.c: adapters, Eq. 1 (book/04) ---- */
/* A CLIP-Adapter: a bias-free bottleneck MLP A(f) whose output is blended
 * with the frozen feature, f' = α A(f) + (1 − α) f, with α learnable. */
typedef enum {
    SC_ALPHA_SIGMOID, /* α = sigmoid(a) with a learnable: α stays in (0, 1) */
    SC_ALPHA_CLAMP,   /* α learnable itself, clamped to [0, 1] after each step */
    SC_ALPHA_RAW      /* α learnable itself, unconstrained (the paper's words) */
} sc_alpha_mode;

typedef struct {
    int reduction;            /* bottleneck R = C / reduction; CLIP-Adapter uses 4 */
    int relu_after_up;        /* 1: ReLU after both layers (official code); 0: Eq. 1 as printed */
    sc_alpha_mode alpha_mode;
    float alpha_init;         /* α at the start; CLIP-Adapter's fixed ratio is 0.2 */
} sc_adapter_config;

typedef struct {
    sc_adapter_config cfg;
    int64_t C, R;             /* feature width, bottleneck width */
    sc_tensor *w1;            /* (R, C) down-projection, PyTorch Linear layout */
    sc_tensor *w2;            /* (C, R) up-projection */
    sc_tensor *alpha;         /* (1) the learnable scalar: α itself or its logit */
} sc_adapter;

/* Official CLIP-Adapter form, sigmoid-kept α, reduction 4, α0 = 0.2. */
sc_adapter_config sc_adapter_defaults(void);
/* Parameters in `weights`, named "<prefix>.w1", "<prefix>.w2",
 * "<prefix>.alpha"; weights drawn like PyTorch's nn.Linear default
 * (uniform in ±1/sqrt(fan_in)). C must be a multiple of cfg.reduction. */
void sc_adapter_init(sc_adapter *ad, sc_arena *weights, int64_t C, sc_adapter_config cfg, sc_rng *rng,
                     const char *prefix);
/* The blend weight α the adapter uses now. */
float sc_adapter_alpha(const sc_adapter *ad);
/* Call after each optimizer step: in SC_ALPHA_CLAMP mode puts α back into
 * [0, 1]; otherwise does nothing. */
void sc_adapter_project(sc_adapter *ad);
/* The kernel pair. f (B, C) → out (B, C), keeping hidden (B, R) =
 * ReLU(f W1ᵀ) and up (B, C) = [ReLU](hidden W2ᵀ) for the backward pass. */
void sc_adapter_forward(float *out, float *hidden, float *up, const float *f, const float *w1,
                        const float *w2, float alpha, int relu_after_up, int64_t B, int64_t C, int64_t R);
/* Accumulates (+=) dW1 (R, C), dW2 (C, R), df (B, C) when not NULL and
 * dα into *dalpha; d_up (B, C) and d_hidden (B, R) are scratch. */
void sc_adapter_backward(float *df, float *dw1, float *dw2, double *dalpha, float *d_up, float *d_hidden,
                         const float *dout, const float *hidden, const float *up, const float *f,
                         const float *w1, const float *w2, float alpha, int relu_after_up, int64_t B,
                         int64_t C, int64_t R);
/* The adapter as an autograd op on f (B, C). */
sc_tensor *sc_adapter_apply(sc_ctx *ctx, const sc_adapter *ad, sc_tensor *f);

/* ---- nn.c: CoOp prompt learner (book/17) ---- */
/* Prompt tuning (Zhou et al., "Learning to Prompt for Vision-Language
 * Models", IJCV 2022): n_ctx learnable context vectors in token-embedding
 * space before each class name, "[SOS] [V]1..[V]n name [EOS]" (MedCLIP:
 * "[CLS] [V]1..[V]n name [SEP] [PAD]..."), trained through the frozen text
 * tower — CLIP's or MedCLIP's BERT — with SGD and a cosine schedule after
 * a constant warm-up (Dassl's defaults). All K prompts are padded to the
 * longest of them (T), in training and evaluation alike; MedCLIP's mean
 * over every position counts that padding (book/17). */
typedef struct {
    int n_ctx;              /* context vectors: 16 (the init words' count when given) */
    int class_specific;     /* 1: one context per prompt (CSC); 0: shared ("unified") */
    float init_std;         /* random initialisation N(0, 0.02²) */
    int epochs;             /* 50 */
    float lr;               /* SGD, 0.002 */
    float momentum;         /* 0.9 */
    float weight_decay;     /* 5e-4 */
    int warmup_epochs;      /* 1, at the constant warmup_lr */
    float warmup_lr;        /* 1e-5 */
    int batch_size;         /* 32 */
    uint64_t seed;          /* initialisation and shuffling */
} sc_coop_config;

typedef struct {
    sc_coop_config cfg;
    int64_t K;              /* prompts: one per class name */
    int64_t T;              /* token positions of the assembled prompts */
    int64_t C;              /* token-embedding width */
    int n_ctx;
    sc_tensor *ctx;         /* (n_ctx, C), or (K·n_ctx, C) with CSC: the parameters */
    sc_tensor *frozen;      /* (K·(T − n_ctx), C) start, name, end and padding embeddings */
    int32_t *rows;          /* (K·T) the row of [ctx; frozen] each position reads */
    int64_t *ids;           /* (K, T) assembled token ids (they choose CLIP's pooled row) */
    int64_t *mask;          /* (K, T) 1 up to each prompt's end token, 0 on its padding
                               (MedCLIP's attention mask) */
    sc_optim opt;           /* SGD on ctx */
    sc_rng rng;             /* initialisation, then shuffling */
    int64_t epoch;          /* epochs completed */
    sc_arena arena;
} sc_coop;

/* The training data: image embeddings and, per image, a target
 * distribution over the prompts of each block (a block is one task: its
 * rows sum to 1, or to 0 for an image without a label there). */
typedef struct {
    int64_t N, E;
    const float *image_emb;    /* (N, E) as the encoder gives them */
    const float *targets;      /* (N, K) */
    int n_blocks;
    const int *block_offset;   /* (n_blocks + 1) block b is prompts [offset[b], offset[b + 1]) */
} sc_coop_data;

sc_coop_config sc_coop_defaults(void);
/* Prompts for K class names given as tokenized rows name_ids (K, Tn):
 * start token, name tokens, end token, padding, as the model's tokenizer
 * writes them, with their attention mask name_mask (K, Tn) (required for
 * MedCLIP, whose end token is the last real one; CLIP's is found by its
 * pooling rule and the mask may be NULL). With init_ids (n_init word ids,
 * e.g. "a photo of a" without start and end tokens) the context starts as
 * those words' embeddings and n_ctx = n_init; otherwise random. Fails with
 * SC_ERANGE when a prompt would not fit the text tower's positions or an
 * id is outside its vocabulary. */
sc_status sc_coop_init(sc_coop *p, const sc_model *m, const int64_t *name_ids, const int64_t *name_mask, int64_t K,
                       int64_t Tn, const int64_t *init_ids, int n_init, const sc_coop_config *cfg, sc_err *err);
/* The end token's position in one name row of Tn ids (mask: its attention
 * mask, required for MedCLIP): the pooled row of CLIP, [SEP] of BERT. */
int64_t sc_coop_name_end(const sc_model *m, const int64_t *ids, const int64_t *mask, int64_t Tn);
void sc_coop_free(sc_coop *p);
/* Text embeddings (K, E) of the current prompts, on the tape. */
sc_tensor *sc_coop_text_features(sc_ctx *ctx, const sc_coop *p, const sc_model *m);
/* CoOp's loss on the images index[0..B): logits = s · cos(image, prompt)
 * with the model's multiplier, cross-entropy against the targets within
 * each block, summed over blocks, averaged over the B images. */
sc_tensor *sc_coop_batch_loss(sc_ctx *ctx, const sc_coop *p, const sc_model *m, const sc_coop_data *d,
                              const int *index, int64_t B);
/* One epoch: the learning rate of this epoch (sc_lr_cosine), a seeded
 * shuffle, one SGD step per batch; returns the mean batch loss. */
double sc_coop_train_epoch(sc_coop *p, const sc_model *m, sc_ctx *ctx, const sc_coop_data *d);

/* ======================================================================== */
/* ---- loss.c: SCALE losses and metrics ----------------------------------- */
/* ======================================================================== */

/* ---- loss.c: the class-concept hierarchy (.hier files, book/03) ---- */
/* A task is one classification problem: its classes C, its concepts L and
 * the valid class-concept combinations h (which give C_l and L_c of Sec.
 * 2.2). A .hier file holds one or more tasks (Derm7p: one per criterion). */
#define SC_HIER_MAX_TASKS 64
#define SC_HIER_MAX_CLASSES 64      /* per task */
#define SC_HIER_MAX_CONCEPTS 256    /* per task */
#define SC_HIER_MAX_COMBOS 1024     /* per task */
#define SC_HIER_MAX_LINE 1024       /* bytes per line */
#define SC_HIER_MAX_BYTES (1 << 20) /* whole file */
#define SC_HIER_MAX_TEMPLATES 16    /* class templates, ensemble templates, references */
#define SC_HIER_MAX_ALIASES 1024    /* per task */
#define SC_HIER_MAX_ALIAS_PARTS 8   /* raw values joined by '+' in one alias */

typedef struct {
    const char *name;    /* identifies it: the dataset's value, the label shown */
    const char *phrase;  /* the words put into prompts (defaults to name) */
} sc_hier_term;

/* Another way a dataset spells a class or a concept: a raw label that
 * counts as class `target`, or raw values that, all present together,
 * give concept `target` (PadChest-GR: "costophrenic angle" + "left" is
 * the concept "left costophrenic angle"). */
typedef struct {
    int target;                /* class or concept index */
    int n_parts;               /* 1..SC_HIER_MAX_ALIAS_PARTS */
    const char **part;         /* (n_parts) raw strings */
} sc_hier_alias;

typedef struct {
    const char *name;          /* "pigmentation" */
    const char *column;        /* dataset column holding the concept, or NULL */
    int multilabel;            /* an image may carry several combinations */
    int n_classes, n_concepts, n_combos;
    sc_hier_term *classes;     /* (n_classes) */
    sc_hier_term *concepts;    /* (n_concepts) */
    int *combo_class;          /* (n_combos) class of combination h */
    int *combo_concept;        /* (n_combos) concept of combination h */
    const char **combo_prompt; /* (n_combos) the canonical prompt of h */
    const char *explain;       /* explanation template, see book/03 */
    int n_ensemble;            /* extra templates for zero-shot prompt ensembles */
    const char **ensemble_prompt; /* (n_ensemble, n_combos) combination h under template e */
    int n_class_templates;     /* at least 1 */
    const char **class_prompt; /* (n_class_templates, n_classes) class-level prompts */
    int n_class_aliases, n_concept_aliases;
    sc_hier_alias *class_aliases;   /* (n_class_aliases) one part each */
    sc_hier_alias *concept_aliases; /* (n_concept_aliases) */
} sc_hier_task;

typedef struct {
    int n_tasks;
    sc_hier_task *tasks;       /* (n_tasks) in file order */
    const char *none_prompt;   /* the "nothing there" prompt of the two-prompt AUC:
                                  "No finding." unless a `none` line says otherwise */
    int n_references;
    const char **reference_prompts; /* (n_references) MONET-style reference prompts */
    sc_arena arena;            /* owns every string and array above */
} sc_hier;

/* Parse a .hier document; `what` names it in errors ("file:line: ..."). */
sc_status sc_hier_parse(sc_hier *h, const char *text, size_t len, const char *what, sc_err *err);
sc_status sc_hier_load(sc_hier *h, const char *path, sc_err *err);
void sc_hier_free(sc_hier *h);
/* The task called `name`, or NULL. */
const sc_hier_task *sc_hier_task_find(const sc_hier *h, const char *name);
/* Index of the combination (class, concept) by names, or -1. With cls NULL
 * the concept alone must name exactly one combination (as in Derm7p). */
int sc_hier_combo_find(const sc_hier_task *t, const char *cls, const char *concept);
/* "melanoma-indicative: diffuse irregular pigmentation" for combination h
 * (the task's explain template filled in); returns buf. */
char *sc_hier_explain(const sc_hier_task *t, int h, char *buf, size_t n);
/* Raw dataset strings. Comparisons ignore ASCII case and blanks at either
 * end. The class a raw label names (its name or a class alias), or -1. */
int sc_hier_class_of(const sc_hier_task *t, const char *raw);
/* 1 when the raw values (n of them, e.g. a finding's locations) give
 * concept l: its name is among them, or all parts of one of its aliases. */
int sc_hier_concept_matches(const sc_hier_task *t, int l, const char *const *values, int n);
/* The concept a single raw value names (Derm7p's cells): the first whose
 * name or one-part alias equals it, or -1. */
int sc_hier_concept_of(const sc_hier_task *t, const char *raw);
/* Keep the combinations h of task `task` with keep[h] != 0 (PadChest-GR
 * drops the rare ones) and drop the classes and concepts left without a
 * combination; everything is renumbered in order, prompts and aliases
 * included. old_to_new (the old n_combos entries, may be NULL) receives
 * each combination's new index or -1. Fails with SC_ERANGE, leaving the
 * task as it was, when no combination would be left. */
sc_status sc_hier_task_keep(sc_hier *h, int task, const uint8_t *keep, int *old_to_new, sc_err *err);

/* ---- loss.c: the SCALE loss, Eq. 2-3 (book/05) ---- */
/* Q (N, M) holds cosine similarities of N images and M texts. Text j
 * carries combination text_combo[j]; images carry multi-hot labels G
 * (N, H), texts GT (M, H). Z[:, h] = s Q[:, k(h)] with k(h) the first text
 * column carrying h. */
typedef enum { SC_SUPCON_ROWS, SC_SUPCON_CROSS } sc_supcon_reading;
typedef enum { SC_REDUCE_MEAN, SC_REDUCE_SUM } sc_reduction;

typedef struct {
    double logit_scale;          /* s in Z = s Q */
    double tau;                  /* SupCon temperature */
    double lambda[4];            /* λ1 concept CE, λ2 class CE, λ3 SupCon(G,Q), λ4 SupCon(GT,Qᵀ) */
    sc_supcon_reading supcon;
    sc_reduction reduction;
    int multilabel;              /* Zhang & Wu anchors per (sample, label) */
} sc_loss_config;

/* The training defaults chosen in book/05. */
sc_loss_config sc_loss_defaults(void);

typedef struct {
    int64_t N, M;              /* images, texts */
    int H;                     /* class-concept combinations */
    int n_classes, n_concepts;
    const int *text_combo;     /* (M) T[j] in [0, H) */
    const float *labels;       /* (N, H) G, entries 0 or 1 */
    const float *text_labels;  /* (M, H) GT, entries 0 or 1 */
    const int *combo_class;    /* (H) class of h, in [0, n_classes) */
    const int *combo_concept;  /* (H) concept of h, in [0, n_concepts) */
} sc_loss_problem;

typedef struct {
    double ce_combo, ce_concept, ce_class, supcon_img, supcon_txt, total;
    int64_t img_anchors, txt_anchors;  /* SupCon anchors that had positives */
} sc_loss_terms;

/* Check a problem from outside (files, user data): indices in range, labels
 * 0/1, every combination has a text column, every class and concept has a
 * combination. `what` names the source in the sentence. */
sc_status sc_loss_problem_check(const sc_loss_problem *p, const char *what, sc_err *err);
/* Every term of Eq. 3 in double precision and, when dQ is not NULL, the
 * gradient dTotal/dQ (N, M). Scratch memory comes from `scratch` and is
 * given back before returning. The problem must have passed the check. */
void sc_scale_loss(sc_loss_terms *terms, double *dQ, const float *Q, const sc_loss_problem *p,
                   const sc_loss_config *cfg, sc_arena *scratch);
/* The same as an autograd op on Q (N, M): returns the total, shape (1);
 * its backward adds upstream · dTotal/dQ into Q's gradient. */
sc_tensor *sc_scale_loss_op(sc_ctx *ctx, sc_tensor *Q, const sc_loss_problem *p,
                            const sc_loss_config *cfg, sc_loss_terms *terms);
/* The scores of Sec. 2.2 for every image: Z (N, H) = s Q[:, k(h)], and
 * their max aggregations z_concept (N, n_concepts) and z_class (N,
 * n_classes). Any output may be NULL. */
void sc_scale_scores(double *Z, double *z_concept, double *z_class, const float *Q, const sc_loss_problem *p,
                     double logit_scale);
/* k(h) for every combination (first column of text_combo equal to h, or
 * -1 when there is none). */
void sc_combo_columns(int64_t *first_col, const int *text_combo, int64_t M, int H);

/* ---- loss.c: training on cached embeddings, Sec. 2.3 (book/05) ---- */
/* The frozen encoders run once; training sees their outputs. Image i
 * comes with the text paired with it and with its labels. */
typedef struct {
    int64_t N, C;              /* training images, embedding width */
    int H, n_classes, n_concepts;
    const float *image_emb;    /* (N, C) image embeddings as the encoder gives them */
    const float *text_emb;     /* (N, C) the text paired with image i, or NULL for the
                                  canonical prompt of text_combo[i] */
    const int *text_combo;     /* (N) the combination the paired text carries */
    const float *labels;       /* (N, H) G */
    const float *text_labels;  /* (N, H) GT, or NULL for one-hot(text_combo) */
    const float *prompt_emb;   /* (H, C) the canonical prompt of each combination */
    const int *combo_class;    /* (H) */
    const int *combo_concept;  /* (H) */
} sc_train_data;

typedef struct {
    sc_loss_config loss;
    sc_adapter_config adapter;
    int image_adapter, text_adapter; /* which branches get an adapter (both by default) */
    int epochs;                /* 150 (Sec. 2.3) */
    float lr;                  /* Adam, 1e-3 (Sec. 2.3) */
    int batch_size;            /* 0: sc_train_batch_size(N) */
    uint64_t seed;             /* adapter initialisation and shuffling */
} sc_train_config;

/* Everything training changes, so that a checkpoint can resume exactly. */
typedef struct {
    sc_train_config cfg;
    int64_t C;
    sc_adapter image, text;    /* used when the matching switch is on */
    sc_tensor *params[6];      /* the trainable tensors, in checkpoint order */
    int n_params;
    sc_arena weights;
    sc_optim opt;
    sc_rng rng;                /* the shuffling stream */
    int64_t epoch;             /* epochs completed */
} sc_scale_model;

sc_train_config sc_train_defaults(void);
/* min(64, max(8, the largest power of two <= N / 4)), and at most N. */
int sc_train_batch_size(int64_t N);
/* Check training data from outside; `what` names its source. */
sc_status sc_train_data_check(const sc_train_data *d, const char *what, sc_err *err);
sc_status sc_scale_model_init(sc_scale_model *m, int64_t C, const sc_train_config *cfg, sc_err *err);
void sc_scale_model_free(sc_scale_model *m);
/* The loss of Eq. 3 for the images index[0..B) as a tape: adapters,
 * normalisation, Q, loss node. Returns the total, shape (1). */
sc_tensor *sc_scale_batch_loss(sc_ctx *ctx, const sc_scale_model *m, const sc_train_data *d, const int *index,
                               int64_t B, sc_loss_terms *terms);
/* One epoch over the data (seeded shuffle, one Adam step per batch);
 * returns the mean total loss over the batches. ctx is reset per step. */
double sc_scale_train_epoch(sc_scale_model *m, sc_ctx *ctx, const sc_train_data *d);
/* Gradient check (book/02): the tape's gradient of the loss of the batch
 * index[0..B) against central finite differences (L(p + h) − L(p − h)) /
 * 2h, with the loss in double and h the float step actually taken, for n
 * entries of the parameters — all of them in order when n covers them,
 * otherwise n distinct ones drawn from `seed`, listed in parameter order.
 * Leaves the parameters as they were and their gradients zero; returns
 * how many entries it checked. */
typedef struct {
    int param;                 /* m->params[param] */
    int64_t index;             /* the entry, row-major within that tensor */
    double tape, fd;           /* ∂L/∂p from sc_backward and from the difference */
} sc_grad_sample;
int64_t sc_scale_grad_check(sc_grad_sample *out, int64_t n, sc_scale_model *m, sc_ctx *ctx,
                            const sc_train_data *d, const int *index, int64_t B, float step, uint64_t seed);

/* Checkpoints are .safetensors files (written atomically) holding the
 * adapter tensors under their names ("image_adapter.w1", ...), Adam's
 * moments ("adam.m.<name>", "adam.v.<name>") and "scale.state", a small
 * float32 vector of exact integers: format, epochs done, Adam steps, the
 * shuffle generator's state in four 16-bit pieces, α mode, second ReLU,
 * reduction, and which adapters exist. book/05 lists it. */
sc_status sc_scale_model_save(const sc_scale_model *m, const char *path, sc_err *err);
/* Rebuild a model from a checkpoint: the adapter architecture (α mode,
 * ReLUs, reduction, which adapters, width) comes from the file, the other
 * options (learning rate, loss, epochs) from cfg. Resuming continues
 * bit for bit where the saved run stopped. */
sc_status sc_scale_model_load(sc_scale_model *m, const char *path, const sc_train_config *cfg, sc_err *err);

/* ---- loss.c: prediction and explanation (book/05) ---- */
/* Q (N, H): the adapted, normalised images against the adapted, normalised
 * canonical prompts (one per combination). */
void sc_scale_similarity(float *Q, const sc_scale_model *m, const float *image_emb, int64_t N,
                         const float *prompt_emb, int H);

/* ---- loss.c: metrics, Sec. 2.3.2 (book/06) ---- */
typedef struct {
    double accuracy;      /* mean over classes of one-vs-rest binary accuracy */
    double macro_recall;  /* classes without positives count 0 (zero_division=0) */
    double macro_f1;      /* likewise */
    double auc;           /* mean ROC AUC over classes with both labels; NAN if none */
    int auc_classes;      /* how many classes entered the AUC mean */
} sc_metrics;

/* ROC AUC of one class: the Mann-Whitney statistic with ties counted half.
 * score[i * stride], truth[i * stride] for i < n; NAN when either label is
 * absent. No score may be NaN (it has no rank; SC_ASSERT): callers with
 * scores from a file reject non-finite ones first, as `scale metrics` does. */
double sc_roc_auc(const float *score, const uint8_t *truth, int64_t n, int64_t stride);
/* pred (N, K): one-hot argmax of each row (the first maximum wins). */
void sc_predict_argmax(uint8_t *pred, const float *scores, int64_t N, int K);
/* pred (N, K): 1 where score >= threshold. */
void sc_predict_threshold(uint8_t *pred, const float *scores, int64_t N, int K, float threshold);
/* All four metrics from scores (N, K), truth (N, K) and predictions (N, K);
 * the scores must not be NaN (see sc_roc_auc). */
void sc_metrics_eval(sc_metrics *m, const float *scores, const uint8_t *truth, const uint8_t *pred,
                     int64_t N, int K);
/* The two-prompt AUC protocol (Hamamci et al.): out[i, k] = softmax over
 * (present, "No finding.") of s · (sim_present[i, k], sim_none[i]), the
 * present entry. */
void sc_two_prompt_scores(float *out, const float *sim_present, const float *sim_none, int64_t N,
                          int K, float logit_scale);

/* ---- loss.c: baselines, Sec. 2.3 (book/17) ---- */
/* Zero-shot scoring, MONET's concept presence and the linear probe, on
 * cached embeddings. CoOp, the prompt-tuning baseline, needs the text
 * tower and lives in nn.c (sc_coop_*). */

/* out (n, E) = rows of x scaled to unit length (a zero row stays zero);
 * out may be x. */
void sc_normalize_rows(float *out, const float *x, int64_t n, int64_t E);
/* A prompt ensemble as in CLIP's zero-shot ImageNet classifier: every
 * variant is normalised, the variants of prompt k are averaged and the
 * mean is normalised again. emb (V, K, E): V variants of K prompts;
 * out (K, E). */
void sc_prompt_ensemble(float *out, const float *emb, int V, int64_t K, int64_t E);
/* Score N images against K prompts, all rows already L2-normalised:
 * logits (N, K) = s · cos (may be NULL) and, when none (E) is given,
 * two_prompt (N, K) = the two-prompt AUC scores of sc_two_prompt_scores
 * against that "No finding." embedding. */
void sc_vlm_scores(float *logits, float *two_prompt, const float *img, int64_t N, const float *prompts, int K,
                   const float *none, int64_t E, float logit_scale);
/* out (N, G) = max over the members h of each group (group_of[h] in
 * [0, G)) of x (N, H): Sec. 2.2's aggregation of combination scores into
 * class or concept scores. A group without members gets -inf. */
void sc_group_max(float *out, const float *x, int64_t N, int H, const int *group_of, int G);

/* MONET's temperature: temp = 1 / exp(4.5944), a multiplier of 98.93,
 * from MONET's tutorial. Whether 4.5944 is MONET's learned logit_scale
 * is UNVERIFIED (OpenAI CLIP's is 4.6052 = ln 100). */
#define SC_MONET_LOG_SCALE 4.5944
/* MONET-style concept presence: out (N, K) = softmax over (mean over the
 * V target prompts of concept k of cos(x, t), mean over the R reference
 * prompts of cos(x, r)) / temp, the first entry. img (N, E), targets
 * (V, K, E) and refs (R, E) are L2-normalised rows. */
void sc_concept_presence(float *out, const float *img, int64_t N, const float *targets, int V, int K,
                         const float *refs, int R, int64_t E, double temp);

/* The linear probe: logistic regression on frozen image features, one
 * output per label; labels come in blocks (one per task), which the
 * softmax loss treats as exclusive. */
typedef enum {
    SC_PROBE_BCE,     /* a sigmoid and binary cross-entropy per output (the paper's) */
    SC_PROBE_SOFTMAX  /* a softmax and cross-entropy over each block */
} sc_probe_loss;

typedef struct {
    sc_probe_loss loss;
    int weighted;       /* 1: inverse-frequency loss weights (the paper's follow-up) */
    int epochs;         /* 150 */
    float lr;           /* Adam, 1e-3 (Sec. 2.3) */
    float l2;           /* λ of (λ/2)‖W‖², 1e-4 */
    int batch_size;     /* 0: sc_train_batch_size(N) */
    uint64_t seed;      /* initialisation and shuffling */
} sc_probe_config;

typedef struct {
    sc_probe_config cfg;
    int64_t E;          /* feature width */
    int K, n_blocks;    /* outputs; blocks of them */
    int *block_offset;  /* (n_blocks + 1) block b is outputs [offset[b], offset[b + 1]) */
    sc_tensor *W;       /* (K, E) */
    sc_tensor *b;       /* (K) */
    float *w_pos;       /* (K) weight of a term whose label is present */
    float *w_neg;       /* (K) weight of a term whose label is absent (BCE) */
    double final_loss;  /* mean loss of the last epoch */
    sc_optim opt;
    sc_arena arena;     /* owns all of the above */
} sc_probe;

sc_probe_config sc_probe_defaults(void);
/* Train on features X (N, E) with labels Y (N, K) of 0/1. Fails with
 * SC_EARG on empty or inconsistent sizes and on a bad config. */
sc_status sc_probe_train(sc_probe *p, const float *X, const uint8_t *Y, int64_t N, int64_t E, int K,
                         const int *block_offset, int n_blocks, const sc_probe_config *cfg, sc_err *err);
/* logits (N, K) = X Wᵀ + b. */
void sc_probe_logits(const sc_probe *p, float *logits, const float *X, int64_t N);
/* logits (N, K) and, when prob is not NULL, probabilities (N, K): σ of
 * each logit (BCE) or the softmax of each block. */
void sc_probe_predict(const sc_probe *p, float *logits, float *prob, const float *X, int64_t N);
void sc_probe_free(sc_probe *p);

/* ---- loss.c: embedding maps, exact t-SNE (Fig. 4, book/14) ---- */
/* van der Maaten and Hinton's t-SNE (JMLR 2008) with the exact O(n²)
 * gradient, in double precision, deterministic for a seed (and for any
 * thread count). The optimiser is scikit-learn's exact method: gradient
 * descent with momentum and per-coordinate gains, early exaggeration. */
#define SC_TSNE_MAX_POINTS 16384 /* P alone is n² doubles: 2 GiB here */

typedef struct {
    double perplexity;          /* 30; lowered to (n - 1) / 3 when n is small */
    double early_exaggeration;  /* 12: P is multiplied by it early on */
    int exaggeration_iters;     /* 250: also when the momentum switches */
    double learning_rate;       /* 200; <= 0 selects scikit-learn's "auto"
                                   rule max(n / early_exaggeration / 4, 50) */
    int iters;                  /* 1000 in all, exaggerated ones included */
    double momentum_early;      /* 0.5 */
    double momentum_late;       /* 0.8 */
    uint64_t seed;              /* the start map is N(0, (1e-4)²) from it */
} sc_tsne_config;

sc_tsne_config sc_tsne_defaults(void);
/* Map n points X (n, d) to Y (n, 2). *kl (if not NULL) receives the final
 * KL(P || Q). Fails (SC_EARG, SC_ERANGE, SC_ENOMEM) on a bad config, a
 * non-finite coordinate or more than SC_TSNE_MAX_POINTS points. */
sc_status sc_tsne(double *Y, const float *X, int64_t n, int64_t d, const sc_tsne_config *cfg, double *kl,
                  sc_err *err);

/* The building blocks, for tests and the book. */
/* P (n, n) holds squared distances on entry and p_{j|i} on return: each
 * row i is the Gaussian around point i whose perplexity exp(H) matches
 * `perplexity` (binary search on the precision, |H - log perplexity| <
 * 1e-5 nats or 100 steps). Row i needs only row i, so one buffer serves. */
void sc_tsne_conditional_p(double *P, int64_t n, double perplexity);
/* The symmetric joint P (n, n) of points X (n, d): p_ij = (p_{j|i} +
 * p_{i|j}) / 2n, zero diagonal, summing to 1. */
void sc_tsne_joint_p(double *P, const float *X, int64_t n, int64_t d, double perplexity);
/* The t-SNE gradient (n, 2) at Y (n, 2) with P exaggerated by α:
 * 4 Σ_j (α p_ij − q_ij)(1 + |y_i − y_j|²)⁻¹ (y_i − y_j); for α = 1 it is
 * the gradient of KL(P || Q). */
void sc_tsne_gradient(double *grad, const double *Y, const double *P, int64_t n, double exaggeration);
/* KL(P || Q) = Σ_{i≠j} p_ij log(p_ij / q_ij) at Y (n, 2). */
double sc_tsne_kl(const double *Y, const double *P, int64_t n);

/* Neighbourhood preservation between a space X (n, d) and a map Y (n, e):
 * Venna and Kaski's trustworthiness, 1 minus a penalty for every map
 * neighbour that was not a neighbour in X, weighted by how far down X's
 * ranking it was. 1 = no intruders; about 0.5 for a random map. Needs
 * 1 <= k < n / 2 and k <= 64. */
sc_status sc_trustworthiness(const float *X, int64_t d, const double *Y, int64_t e, int64_t n, int k,
                             double *out, sc_err *err);
/* Leave-one-out k-nearest-neighbour accuracy in Y (n, e): the share of
 * points whose label wins the vote of their k nearest other points (a tie
 * goes to the label of the nearer voter). 1 <= k < n, k <= 64. */
double sc_knn_accuracy(const double *Y, int64_t e, const int *label, int64_t n, int k);

/* ---- loss.c: pretraining a CLIP model from scratch (book/15) ---- */
/* CLIP's symmetric contrastive loss (Radford et al. 2021) over N pairs:
 * with logits L = exp(t) · norm(img) · norm(txt)ᵀ (N, N), the mean of the
 * cross-entropies of the rows (image i → caption i) and of the columns
 * (caption j → image j). logit_scale holds t (one element, on the tape
 * when it is a parameter). Returns shape (1). */
sc_tensor *sc_clip_loss(sc_ctx *ctx, sc_tensor *img, sc_tensor *txt, sc_tensor *logit_scale);

/* Image–caption pairs: every image has `captions` captions, one of which
 * is drawn each time the image is. */
typedef struct {
    int64_t n;                 /* images */
    int64_t S;                 /* side of the model's input */
    const float *pixels;       /* (n, 3, S, S) after the model's preprocessing */
    int64_t captions;          /* K captions per image */
    int64_t T;                 /* ids per caption row, at most the text context */
    const int64_t *ids;        /* (n, K, T) token ids, one row per caption */
} sc_pretrain_data;

typedef struct {
    int64_t steps;             /* optimizer steps */
    int64_t batch;             /* pairs per step (the contrastive batch) */
    int64_t warmup;            /* steps of linear warm-up, then cosine to 0 */
    float lr;                  /* peak learning rate of AdamW */
    float weight_decay;        /* on the weight matrices (ndim >= 2) only */
    int flip;                  /* 1 = mirror images at random (4 ways) */
    uint64_t seed;             /* shuffling, caption choice, flips */
} sc_pretrain_config;

/* Everything pretraining changes besides the model's parameters. */
typedef struct {
    sc_pretrain_config cfg;
    sc_optim decay, no_decay;  /* AdamW with and without weight decay */
    sc_tensor *logit_scale;    /* the model's parameter, clipped to [0, ln 100] */
    sc_rng rng;
    int *order;                /* (n) image order of the current epoch */
    int64_t next;              /* position in `order` */
    int64_t step;              /* steps done */
} sc_pretrainer;

sc_pretrain_config sc_pretrain_defaults(void);
/* Check the data against the model (sc_model_new_trainable) and set up the
 * optimizers. The data must outlive the pretrainer. */
sc_status sc_pretrainer_init(sc_pretrainer *p, sc_model *m, const sc_pretrain_data *d, const sc_pretrain_config *cfg,
                             sc_err *err);
/* One AdamW step on a batch of cfg.batch pairs; returns the batch loss.
 * ctx is reset first. With a fixed seed and thread count every step is
 * bit-reproducible. */
double sc_pretrainer_step(sc_pretrainer *p, sc_model *m, sc_ctx *ctx, const sc_pretrain_data *d);
void sc_pretrainer_free(sc_pretrainer *p);

/* ======================================================================== */
/* ---- scale.c: datasets and the embedding cache -------------------------- */
/* ======================================================================== */

/* DATASETS. A reader turns a dataset as released into one table: N images,
 * each with its split, its patient group and its labels, plus the texts
 * that come with the images (PadChest-GR's report sentences). Labels are
 * the combinations of a class-concept hierarchy (.hier, loss.c section 1),
 * all tasks side by side in K columns: task t owns the columns
 * [label_offset[t], label_offset[t + 1]), one per combination h of the
 * task. Derm7p sets exactly one column of each of its 7 tasks; PadChest-GR
 * sets any number of its one multi-label task. book/16 has the details.
 *
 *   sc_dataset_options o = sc_dataset_defaults();
 *   sc_dataset_spec(&o, "derm7p:/data/release_v0", &err);
 *   sc_dataset ds;
 *   if (sc_dataset_load(&ds, &o, &err) != SC_OK) { puts(err.msg); ... }
 *   ... ds.labels[i * ds.n_labels + ds.label_offset[t] + h] ...
 *   sc_dataset_free(&ds);
 */
typedef enum { SC_SPLIT_TRAIN, SC_SPLIT_VALID, SC_SPLIT_TEST, SC_SPLIT_NONE } sc_split;
#define SC_N_SPLITS 4
/* "train", "valid", "test", "none" */
const char *sc_split_name(sc_split s);

typedef enum { SC_DATA_DERM7P, SC_DATA_PADCHEST_GR, SC_DATA_MANIFEST } sc_dataset_kind;
/* "derm7p", "padchest-gr", "manifest" */
const char *sc_dataset_kind_name(sc_dataset_kind k);

typedef enum {
    SC_SPLITS_OFFICIAL,   /* the dataset's own: Derm7p's index files, PadChest-GR's
                             master table, a manifest's split column */
    SC_SPLITS_STRATIFIED  /* test_fraction of the groups to test, the rest to train,
                             by sc_stratify (PadChest-GR in the paper: 15 %) */
} sc_split_rule;

/* How to read a dataset. Strings are the caller's and must outlive the
 * load (sc_dataset keeps its own copies). */
typedef struct {
    sc_dataset_kind kind;
    const char *path;          /* Derm7p: release_v0/ (or its parent); PadChest-GR: the
                                  folder with grounded_reports_*.json (the last by name,
                                  i.e. the newest release, when there are several) and
                                  master_table.csv; manifest: the CSV */
    const char *hier;          /* hierarchy file; NULL: data/derm7p.hier, data/padchest-gr.hier
                                  (here or beside the program), or for a manifest one
                                  derived from its labels */
    int clinic;                /* Derm7p: 1 = the clinic column's images, 0 = derm */
    int keep_replaced_clinic;  /* Derm7p with clinic: keep the cases whose clinic image is
                                  a dermoscopic one (notes "... replaced ..."), left out by default */
    int skip_bad;              /* report bad rows in `skipped` and go on, instead of failing */
    int spanish;               /* PadChest-GR: sentence_es instead of sentence_en */
    int min_cases;             /* drop combinations on fewer images; -1: the kind's default
                                  (PadChest-GR 10, as the paper; others 0 = keep all) */
    int keep_unlabelled;       /* PadChest-GR, manifest: keep images without a combination */
    const char *images;        /* PadChest-GR: image folder under path; NULL: the first of
                                  Padchest_GR_files, PadChest_GR, images that exists, else path */
    sc_split_rule split;
    double test_fraction;      /* SC_SPLITS_STRATIFIED: 0.15 */
    uint64_t split_seed;       /* SC_SPLITS_STRATIFIED: 0 */
} sc_dataset_options;

sc_dataset_options sc_dataset_defaults(void);
/* "KIND:PATH" (derm7p:, padchest-gr:, manifest:) into o->kind and o->path
 * (which points into spec). */
sc_status sc_dataset_spec(sc_dataset_options *o, const char *spec, sc_err *err);

typedef struct {
    sc_dataset_options options;  /* as loaded, strings copied, defaults resolved */
    sc_hier hier;                /* the tasks as used: rare combinations dropped */
    const char *hier_source;     /* the .hier text it was parsed from (a derived one for
                                    a manifest without --hier), NUL-terminated */
    const char *hier_path;       /* its file, or "(derived)" */
    int *label_offset;           /* (n_tasks + 1) */
    int n_labels;                /* K: combinations of all tasks */
    int64_t n_images;            /* N */
    const char **image_path;     /* (N) the file to read */
    const char **image_id;       /* (N) the dataset's name: case_num, ImageID, id column */
    const char **group_id;       /* (N) the patient (PadChest-GR) or case: splits keep a group together */
    int64_t *group;              /* (N) group_id as 0, 1, ... in order of first appearance */
    int64_t *source_row;         /* (N) 0-based row of meta.csv / study of the JSON / manifest row */
    uint8_t *split;              /* (N) sc_split */
    uint8_t *labels;             /* (N, K) 0/1 */
    int64_t n_texts;             /* M */
    const char **text;           /* (M) report sentences, manifest texts */
    int64_t *text_image;         /* (M) the image each describes */
    uint8_t *text_labels;        /* (M, K) the combinations each states */
    int n_dropped;
    const char **dropped;        /* (n_dropped) "task|class|concept" of combinations dropped as rare */
    int n_skipped;
    const char **skipped;        /* (n_skipped) with skip_bad: one sentence per row left out */
    int n_notes;
    const char **notes;          /* (n_notes) what the reader decided, for the summary */
    sc_arena arena;              /* owns the strings; the arrays are malloc'ed, freed with it */
} sc_dataset;

/* Read, map to the hierarchy, drop rare combinations (and then images left
 * without one, unless keep_unlabelled), and split. A bad row, a value the
 * hierarchy does not know or a missing image fails with one sentence naming
 * the file, the row and the column, unless skip_bad. */
sc_status sc_dataset_load(sc_dataset *ds, const sc_dataset_options *o, sc_err *err);
void sc_dataset_free(sc_dataset *ds);
/* Images per split and, per task and combination, images per split. */
void sc_dataset_print(const sc_dataset *ds, FILE *out);

/* STRATIFIED SPLITS. Iterative stratification (Sechidis, Tsoumakas and
 * Vlahavas, ECML PKDD 2011), for multi-label data and whole groups: the
 * rarest label is dealt out first, each of its items to the fold that most
 * lacks it; items without labels go where the fold sizes fall shortest.
 * A repair pass then moves or swaps units while some label is more than
 * one item off its share in a fold and a change lowers the squared error
 * of all shares (book/16). With group (N) not NULL, items with the same
 * group are dealt as one unit. fold[i] in [0, n_folds) gets fraction[f]
 * of every label: with one label per item and no groups, every label's
 * count in fold f is within one of fraction[f] times its total; with
 * several labels per item this held in every trial of the tests; whole
 * groups can make it impossible. The shuffled order of the units comes
 * from seed, so different seeds give different splits. Fractions must be
 * >= 0 and sum to 1; n_folds <= 64. */
sc_status sc_stratify(int *fold, const uint8_t *labels, int64_t N, int K, const int64_t *group,
                      const double *fraction, int n_folds, uint64_t seed, sc_err *err);
/* The experiments' training subsets: a stratified random fraction of the
 * n items listed in `items` (indices into labels (N, K) and group (N)),
 * written to chosen in increasing order; *n_chosen is their number.
 * fraction 1 chooses all. Subsets of different seeds are not nested. */
sc_status sc_stratified_subset(int64_t *chosen, int64_t *n_chosen, const int64_t *items, int64_t n,
                               const uint8_t *labels, int K, const int64_t *group, double fraction, uint64_t seed,
                               sc_err *err);

/* PROGRESS on a stream: with a terminal a bar redrawn in place with rate
 * and time left; otherwise a plain line every 10 % or 30 s. */
typedef struct {
    FILE *out;                 /* NULL: silent */
    const char *what;          /* "images" */
    int64_t total, done;
    double start, last;        /* seconds, monotonic clock */
    int tty;
    int last_tenth;
} sc_progress;

void sc_progress_begin(sc_progress *p, FILE *out, const char *what, int64_t total);
void sc_progress_update(sc_progress *p, int64_t done);
void sc_progress_end(sc_progress *p);

/* THE EMBEDDING CACHE. `scale embed` runs the frozen encoders once over all
 * images and all texts of a dataset and stores the raw float32 embeddings
 * (as the towers give them, not normalised) in a directory:
 *   index.json        format, counts, the fingerprint (below), shard
 *   hierarchy.hier    the hierarchy used, verbatim
 *   images.csv        per image: id, group, split, file, bytes, sha256, labels
 *   image_emb.npy     (N, E) float32
 *   image_labels.npy  (N, K) uint8
 *   texts.csv         per text: kind, task, index, variant, image, tokens, text
 *   text_emb.npy      (M, E) float32
 *   text_ids.npy      (M, T) int64 token ids; text_mask.npy (M, T) int64
 *   text_labels.npy   (M, K) uint8
 * The texts are, task by task, the canonical prompt of every combination,
 * its ensemble variants, the class-level prompts, the combination and class
 * names (CoOp's class tokens), then "No finding." and the reference
 * prompts, then the dataset's own sentences.
 *
 * The fingerprint records the SHA-256 of every model file used (weights,
 * config, tokenizer files), the model kind, the preprocessing pipeline and
 * tokenizer settings, the SHA-256 of the dataset's label files and of the
 * hierarchy, and the reader's options; a cache whose fingerprint differs
 * from the one computed now is refused (sc_cache_check). A cache is written
 * to a temporary directory and renamed into place, so a failed run leaves
 * nothing at the destination. */
typedef enum {
    SC_TEXT_PROMPT,       /* the canonical prompt of combination `index` */
    SC_TEXT_ENSEMBLE,     /* combination `index` under ensemble template `variant` */
    SC_TEXT_CLASS,        /* class `index` under class template `variant` */
    SC_TEXT_NAME,         /* combination `index` as a name (its explanation) */
    SC_TEXT_CLASS_NAME,   /* class `index` as a name (its phrase) */
    SC_TEXT_NONE,         /* "No finding." (task -1) */
    SC_TEXT_REFERENCE,    /* reference prompt `index` (task -1) */
    SC_TEXT_SENTENCE      /* a dataset text about image `image` */
} sc_text_kind;
#define SC_N_TEXT_KINDS 8
const char *sc_text_kind_name(sc_text_kind k); /* "prompt", "ensemble", ... */

typedef struct {
    const char *model;         /* a model directory: weights, config.json, tokenizer files */
    const char *pipeline;      /* NULL: the model's own (sc_pipeline_for_model) */
    int batch;                 /* images per forward pass (texts too): 16 */
    int shard, n_shards;       /* embed slice `shard` of n_shards (0 of 1: everything) */
    FILE *progress;            /* where progress goes, or NULL */
} sc_embed_config;

sc_embed_config sc_embed_defaults(void);
/* Embed dataset ds into the new directory out_dir (which must not exist).
 * A shard holds the images of batches [shard·B/n, (shard+1)·B/n) of all B
 * batches, so sharded and whole runs put every image in the same batch;
 * the texts are embedded in shard 0 only. */
sc_status sc_embed(const sc_embed_config *cfg, const sc_dataset *ds, const char *out_dir, sc_err *err);
/* Join the n shard directories of one sharded run (any order) into the new
 * directory out_dir, byte for byte what an unsharded run writes. Shards of
 * different runs (fingerprints, counts, batch sizes) are refused. */
sc_status sc_cache_merge(const char *out_dir, const char *const *shard_dirs, int n, sc_err *err);

typedef struct {
    char dir[1024];
    sc_hier hier;              /* the tasks as embedded */
    int *label_offset;         /* (n_tasks + 1) */
    int n_labels;              /* K */
    int64_t N, M, E, T;        /* images, texts, embedding width, token columns */
    float *image_emb;          /* (N, E) raw */
    float *text_emb;           /* (M, E) raw */
    int64_t *text_ids;         /* (M, T) */
    int64_t *text_mask;        /* (M, T) */
    uint8_t *image_labels;     /* (N, K) */
    uint8_t *text_labels;      /* (M, K) */
    uint8_t *split;            /* (N) sc_split */
    int64_t *group;            /* (N) groups numbered in order of first appearance */
    const char **image_id;     /* (N) */
    const char **image_path;   /* (N) */
    uint8_t *text_kind;        /* (M) sc_text_kind */
    int *text_task;            /* (M) task, or -1 */
    int *text_index;           /* (M) combination, class or reference index, or -1 */
    int *text_variant;         /* (M) ensemble or class template, else 0 */
    int64_t *text_image;       /* (M) image of a sentence, else -1 */
    int *text_tokens;          /* (M) real tokens in the row */
    const char **text;         /* (M) */
    char model_kind[16];       /* "clip" or "medclip" */
    float logit_scale;         /* the model's multiplier, exp(logit_scale) (clamped for MedCLIP) */
    char dataset_kind[16];
    sc_json_doc index;         /* index.json as read */
    sc_arena arena;
} sc_cache;

/* Load a whole (unsharded or merged) cache, checking every array's shape
 * against index.json. */
sc_status sc_cache_load(sc_cache *c, const char *dir, sc_err *err);
void sc_cache_free(sc_cache *c);
/* Refuse a stale cache: recompute the fingerprint of the model directory
 * (with pipeline, NULL = its own) and of the dataset options, and fail
 * with SC_EFORMAT naming the first entry that differs. With data, also
 * load the dataset and hash every image file: an image that is gone, in
 * another row, or not the bytes images.csv records makes the cache stale
 * too, and the message names its file. model or data may be NULL to leave
 * that half unchecked. */
sc_status sc_cache_check(const sc_cache *c, const char *model, const char *pipeline, const sc_dataset_options *data,
                         sc_err *err);
/* The row of a text: kind, task, index and variant as in sc_text_kind;
 * -1 when the cache holds none. */
int64_t sc_cache_text_row(const sc_cache *c, sc_text_kind kind, int task, int index, int variant);

/* ======================================================================== */
/* ---- scale.c: experiments, Sec. 2.3 (book/17) --------------------------- */
/* ======================================================================== */

/* EXPERIMENTS. `scale experiment --config FILE` runs the paper's protocol
 * on an embedding cache: each method on nested stratified subsets of the
 * training split (fractions 0.05 .. 1, several subsets each, one at 1),
 * evaluated on the test split at the class level and at the level of
 * class-concept combinations, every metric averaged over the tasks. The
 * config format is in `scale experiment --help` and book/17.
 *
 *   sc_experiment ex;
 *   if (sc_experiment_load(&ex, "derm7p.conf", &err) != SC_OK) { puts(err.msg); ... }
 *   sc_run_options opt = {stderr, stdout, NULL};
 *   sc_experiment_main(&ex, "runs/derm7p", &opt, &err);
 *   sc_experiment_free(&ex);
 */
typedef enum {
    SC_METHOD_ZERO_SHOT,     /* the frozen VLM with prompts (loss.c section 9) */
    SC_METHOD_CONCEPT_SCORE, /* MONET's concept presence against reference prompts */
    SC_METHOD_LINEAR_PROBE,  /* logistic regression on frozen image features */
    SC_METHOD_COOP,          /* prompt tuning (nn.c section 9); CLIP models only */
    SC_METHOD_SCALE          /* the paper's method (loss.c sections 5-6) */
} sc_method_kind;
#define SC_N_METHOD_KINDS 5
/* "zero-shot", "concept-score", "linear-probe", "coop", "scale" */
const char *sc_method_kind_name(sc_method_kind k);

#define SC_EXP_MAX_METHODS 16
#define SC_EXP_MAX_FRACTIONS 16
#define SC_EXP_MAX_SEEDS 100
#define SC_EXP_MAX_INIT_WORDS 32

typedef struct {
    char name[64];             /* label in tables and legends */
    sc_method_kind kind;
    int line;                  /* its line in the config file */
    const char *cache;         /* zero-shot, concept-score: score with this cache instead
                                  (the same dataset embedded by, say, a generic CLIP) */
    int class_prompts;         /* zero-shot: the class level from class-level prompts */
    int ensemble;              /* zero-shot: prompt ensembles (sc_prompt_ensemble) */
    double temp;               /* concept-score: MONET's temperature */
    sc_probe_config probe;     /* linear-probe */
    sc_coop_config coop;       /* coop */
    const char *coop_init;     /* coop: words the context starts from, or NULL (random) */
    sc_train_config scale;     /* scale */
    int separate_tasks;        /* scale: one adapter pair per task instead of one for all */
    int dashed;                /* its line in Fig. 2 is dashed (default for weighted probes) */
} sc_method;

typedef struct {
    char path[1024];           /* the config file ("" when parsed from memory) */
    const char *text;          /* its text, kept for the run folder */
    const char *name;          /* title, or NULL */
    const char *cache;         /* the embedding cache */
    const char *model;         /* model directory, or NULL */
    const char *dataset;       /* "KIND:PATH" to embed from, or NULL */
    const char *hier;          /* the dataset's hierarchy, or NULL (its kind's) */
    int clinic;                /* Derm7p: clinic images */
    int train_valid;           /* 1: train on the train and valid splits */
    int n_fractions;
    double fractions[SC_EXP_MAX_FRACTIONS]; /* increasing, in (0, 1] */
    int n_seeds;               /* subsets per fraction below 1 */
    uint64_t seed;
    int levels;                /* bit 0: class, bit 1: class-concept */
    const char *tsne_task, *tsne_class; /* Fig. 4, or NULL */
    int tsne_points;           /* at most this many texts in Fig. 4 (100) */
    const char *explain;       /* method for explanations.csv, or NULL */
    int explained;             /* its index (default: the last scale method), or -1 */
    int n_methods;
    sc_method methods[SC_EXP_MAX_METHODS];
    sc_arena arena;            /* owns the strings */
} sc_experiment;

/* Parse a config; relative paths are taken from base_dir (may be NULL or
 * ""). Errors read "FILE:LINE: what is wrong". */
sc_status sc_experiment_parse(sc_experiment *ex, const char *text, size_t len, const char *what, const char *base_dir,
                              sc_err *err);
/* The same from a file, paths relative to the file's folder. */
sc_status sc_experiment_load(sc_experiment *ex, const char *path, sc_err *err);
/* Run with another model directory than the config's (`scale experiment
 * --model DIR`): SC_EARG when model is not a folder with a config.json. A
 * model other than the config's gets its own cache, "CACHE-NAME" for the
 * config's CACHE and the folder's name NAME; the config's own folder, or a
 * config without a model, keeps the cache named in the file. */
sc_status sc_experiment_set_model(sc_experiment *ex, const char *model, sc_err *err);
void sc_experiment_free(sc_experiment *ex);

typedef struct {
    FILE *progress;            /* progress and notes (stderr), or NULL */
    FILE *summary;             /* the summary tables once done (stdout), or NULL */
    const char *command_line;  /* recorded in run.json, or NULL */
} sc_run_options;

/* Run on a loaded cache (model: CoOp's text tower, CLIP's or MedCLIP's,
 * required when a method is CoOp, else may be NULL) into the new folder
 * out_dir, which appears complete or not at all. CoOp's names get CoOp's
 * period from the tokenizer of ex->model; without one (a model given in
 * memory) they go in without it, and the summary notes that. Results
 * depend on the seed, not on the thread count. */
sc_status sc_experiment_run(const sc_experiment *ex, const sc_cache *cache, const sc_model *model, const char *out_dir,
                            const sc_run_options *opt, sc_err *err);
/* Everything: embed the dataset into the cache if it is missing, refuse a
 * stale one (sc_cache_check), load the model when CoOp needs it, run. */
sc_status sc_experiment_main(const sc_experiment *ex, const char *out_dir, const sc_run_options *opt, sc_err *err);

/* Nested stratified training subsets (book/17): the items of `items` (n
 * indices into labels (N, K)) whose key, drawn from the seed, is below
 * `fraction`, in the order listed. For one seed a larger fraction only adds
 * items; each item's stratum is its rarest label, and every stratum keeps
 * its share within one item. Fraction 1 chooses all. */
sc_status sc_nested_subset(int64_t *chosen, int64_t *n_chosen, const int64_t *items, int64_t n, const uint8_t *labels,
                           int K, double fraction, uint64_t seed, sc_err *err);

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

/* nn.c internals, exposed for tests. sc__attention: multi-head attention
 * of q, k, v (B, T, C) with H heads (causal or not) as an op on the tape.
 * sc__swin_windows: the windows of Swin block `block` on a stage of
 * Hs × Ws tokens with configured window M0 — returns the window side in
 * use, sets *shift and *n_win, and (when not NULL) fills src (n_win·M²)
 * with the token each window position shows (−1 = padding) and, when the
 * block shifts, mask (n_win, M², M²) with 0 / −100.
 * sc__swin_relative_index: the bias-table row of query i, key j. */
sc_tensor *sc__attention(sc_ctx *ctx, sc_tensor *q, sc_tensor *k, sc_tensor *v, int64_t H, int causal);
int64_t sc__swin_windows(int64_t Hs, int64_t Ws, int64_t M0, int64_t block, int64_t *shift, int64_t *n_win,
                         int64_t *src, float *mask);
int64_t sc__swin_relative_index(int64_t M0, int64_t M, int64_t i, int64_t j);
/* Force the GEMM kernel for tests and benchmarks: level 0 = portable, 1 =
 * AVX2/FMA (clamped to what this CPU runs); -1 = automatic again, which
 * reads SCALE_NO_SIMD anew. Returns the level now in use. */
int sc__gemm_force(int level);
/* Whether products small enough to fit in L2 skip packing their operands
 * (1, the default) or take the packed path like larger ones (0), for tests
 * that compare the two; returns the previous setting. */
int sc__gemm_direct(int enable);

#ifdef __cplusplus
}
#endif
#endif /* SCALE_H */
