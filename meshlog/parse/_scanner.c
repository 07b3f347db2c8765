/* The split plan, walked in C: lines (an Arrow string column) -> one typed Arrow column per wanted
 * field, and whether the scanner vouches for each line.
 *
 * Why C: polars cuts a field with ~30 ns of kernel per piece and an Istio line has 37 pieces, then
 * casts numbers and times in more passes; one walk that finds the separators left to right and reads
 * each field as it passes is several times cheaper. Text fields come out as Arrow string_views into
 * the input's own data buffers (a field longer than 12 bytes is an offset into the line it came from,
 * a shorter one is inlined, as Arrow requires), so no text is copied; integers as int64 and Envoy's
 * default START_TIME as microseconds, read here.
 *
 * The scanner decides only what it is sure polars would decide the same way: an integer of at most
 * 18 digits, an ISO time of the one default shape with valid ranges. A line with any other value (or
 * one the plan's separator counts refuse) is not vouched for, and the caller reads it again on the
 * polars path, which stays the reference: the tests hold the two paths equal.
 *
 * Built against CPython's stable ABI (3.11+): one wheel per platform serves every later Python.
 * The GIL is released while lines are cut, so blocks are scanned in parallel threads.
 */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030B0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html) ---- */

#define ARROW_FLAG_NULLABLE 2

struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};

#if defined(_MSC_VER)
#include <intrin.h>
#include <windows.h>
static long decref_count(volatile long *n) { return InterlockedDecrement(n); }
static int first_bit(int x) {
    unsigned long i;
    _BitScanForward(&i, (unsigned long)x);
    return (int)i;
}
#else
static long decref_count(volatile long *n) { return __atomic_sub_fetch(n, 1, __ATOMIC_ACQ_REL); }
static int first_bit(int x) { return __builtin_ctz((unsigned)x); }
#endif
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#endif

/* ---- The plan ---- */

enum { CONST = 0, LEAF = 1, SPLIT = 2 };

typedef struct {
    int kind;
    int slot;                 /* LEAF: output column, or -1 (checked, not wanted) */
    const char *a;            /* CONST: text; LEAF: prefix; SPLIT: separator */
    Py_ssize_t a_len;
    const char *b;            /* LEAF: suffix */
    Py_ssize_t b_len;
    int n_children;           /* SPLIT: its parts, as node indexes */
    int *children;
} Node;

typedef struct {
    Node *nodes;
    int n_nodes;
    int *child_store;
} Program;

/* ---- One line being cut ---- */

typedef struct {
    const uint8_t *data;      /* the line's bytes */
    int32_t buffer;           /* global data-buffer index, or -1: the line is inline (<= 12 bytes) */
    int64_t offset;           /* where the line starts in that buffer */
} Line;

/* What a slot holds, and how its text is read (meshlog.parse.scanner builds these from cast.py's rules). */
enum { TEXT = 0, INTEGER = 1, TIME = 2 };
enum { UNSET_DASH = 1, UNSET_EMPTY = 2, STRIP_SEMICOLON = 4 };

typedef struct {
    int mode;
    int flags;
    uint8_t *valid;           /* validity bitmap */
    uint8_t *data;            /* TEXT: 16-byte views; INTEGER, TIME: int64 */
} Slot;

typedef struct {
    Slot *slots;
    int64_t row;
    int undecided;            /* a value of this line is left to polars */
} Out;

static void set_valid(Slot *slot, int64_t row) { slot->valid[row >> 3] |= (uint8_t)(1u << (row & 7)); }

/* Written straight into the column (building the 16 bytes on the stack and copying them costs a
 * store-forwarding stall per field, measured as a fifth of the walk). */
static void put_view(Slot *slot, int64_t row, const Line *line, int64_t start, int64_t len) {
    uint8_t *v = slot->data + row * 16;
    int32_t n = (int32_t)len;
    if (len <= 12) {
        memset(v, 0, 16);
        memcpy(v, &n, 4);
        memcpy(v + 4, line->data + start, (size_t)len);
    } else {
        int32_t at = (int32_t)(line->offset + start);
        memcpy(v, &n, 4);
        memcpy(v + 4, line->data + start, 4);
        memcpy(v + 8, &line->buffer, 4);
        memcpy(v + 12, &at, 4);
    }
}

/* -?[0-9]{1,18}: what polars' string -> Int64 cast reads the same way (it also takes "+5"; such a
 * value is left to it). */
static int read_integer(const uint8_t *s, int64_t len, int64_t *out) {
    int negative = len > 0 && s[0] == '-';
    int64_t i = negative, value = 0;
    if (len - i < 1 || len - i > 18)
        return 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        value = value * 10 + (s[i] - '0');
    }
    *out = negative ? -value : value;
    return 1;
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) { /* H. Hinnant's algorithm */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const uint8_t *s, int n, int64_t *out) {
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* YYYY-MM-DDTHH:MM:SS.f{1,6}Z (Envoy's default %Y-%m-%dT%H:%M:%E3SZ) -> microseconds since the epoch.
 * Anything else (no fraction, a leap second, a 30th of February) is left to polars' chrono. */
static int read_time(const uint8_t *s, int64_t len, int64_t *out) {
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t y, mo, d, h, mi, sec, frac = 0;
    if (len < 22 || len > 27 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.' || s[len - 1] != 'Z')
        return 0;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        return 0;
    int n = (int)(len - 21);
    if (!digits(s + 20, n, &frac))
        return 0;
    for (int i = n; i < 6; i++)
        frac *= 10;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 ||
        sec > 59)
        return 0;
    *out = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 * 1000000 + sec * 1000000 + frac;
    return 1;
}

/* One field's piece into its slot; a value the scanner does not decide marks the line undecided. */
static int put_field(Out *out, int at, const Line *line, int64_t start, int64_t len) {
    Slot *slot = &out->slots[at];
    const uint8_t *s = line->data + start;
    int unset = (len == 1 && s[0] == '-') ? UNSET_DASH : len == 0 ? UNSET_EMPTY : 0;
    if (slot->mode == TEXT) {
        if (unset & slot->flags) {
            memset(slot->data + out->row * 16, 0, 16);
            return 1;
        }
        if ((slot->flags & STRIP_SEMICOLON) && len > 0 && s[len - 1] == ';')
            len--;
        put_view(slot, out->row, line, start, len);
        set_valid(slot, out->row);
        return 1;
    }
    int64_t value = 0;
    if (unset) {  /* "-" and "" are unset for numbers and times */
        memcpy(slot->data + out->row * 8, &value, 8);
        return 1;
    }
    if (!(slot->mode == INTEGER ? read_integer(s, len, &value) : read_time(s, len, &value))) {
        out->undecided = 1;  /* the plan goes on: whether its counts hold decides which road the line takes */
        return 1;
    }
    memcpy(slot->data + out->row * 8, &value, 8);
    set_valid(slot, out->row);
    return 1;
}

/* The first byte c in s[0, len): the pieces between separators are short (a status code, a flag), so
 * a call into memchr per piece costs more than the search; 16 bytes at a time where SSE2 is there. */
static const uint8_t *find_byte(const uint8_t *s, int64_t len, uint8_t c) {
#if defined(__SSE2__) || defined(_M_X64)
    const __m128i want = _mm_set1_epi8((char)c);
    while (len >= 16) {
        int hits = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)s), want));
        if (hits)
            return s + first_bit(hits);
        s += 16;
        len -= 16;
    }
#endif
    for (int64_t i = 0; i < len; i++)
        if (s[i] == c)
            return s + i;
    return NULL;
}

static const uint8_t *find(const uint8_t *s, int64_t len, const char *sep, Py_ssize_t sep_len) {
    if (sep_len == 1)
        return find_byte(s, len, (uint8_t)sep[0]);
    const uint8_t *end = s + len - sep_len;
    for (const uint8_t *p = s; p <= end; p++) {
        p = find_byte(p, end - p + 1, (uint8_t)sep[0]);
        if (p == NULL)
            return NULL;
        if (memcmp(p, sep, (size_t)sep_len) == 0)
            return p;
    }
    return NULL;
}

#define MAX_PARTS 256

/* Cut the piece [start, start+len) of the line by node; 1 when the plan vouches for it. */
static int walk(const Program *prog, int at, const Line *line, int64_t start, int64_t len, Out *out) {
    const Node *node = &prog->nodes[at];
    const uint8_t *s = line->data + start;
    switch (node->kind) {
    case CONST:
        return len == node->a_len && memcmp(s, node->a, (size_t)len) == 0;
    case LEAF:
        if (len < node->a_len + node->b_len)
            return 0;
        if (node->a_len && memcmp(s, node->a, (size_t)node->a_len) != 0)
            return 0;
        if (node->b_len && memcmp(s + len - node->b_len, node->b, (size_t)node->b_len) != 0)
            return 0;
        if (node->slot >= 0)
            return put_field(out, node->slot, line, start + node->a_len, len - node->a_len - node->b_len);
        return 1;
    case SPLIT: {
        /* Exactly n_children - 1 separators, found left to right, or the line is refused. */
        int64_t cuts[MAX_PARTS + 1];
        int parts = node->n_children;
        int64_t from = 0;
        for (int i = 0; i < parts - 1; i++) {
            const uint8_t *p = find(s + from, len - from, node->a, node->a_len);
            if (p == NULL)
                return 0;
            cuts[i] = p - s;
            from = cuts[i] + node->a_len;
        }
        if (find(s + from, len - from, node->a, node->a_len) != NULL)
            return 0;
        int64_t piece = 0;
        for (int i = 0; i < parts; i++) {
            int64_t end = i < parts - 1 ? cuts[i] : len;
            if (!walk(prog, node->children[i], line, start + piece, end - piece, out))
                return 0;
            piece = end + node->a_len;
        }
        return 1;
    }
    }
    return 0;
}

static void free_program(Program *prog) {
    free(prog->nodes);
    free(prog->child_store);
}

/* nodes: tuple of (kind, slot, a: bytes, b: bytes, children: tuple[int, ...]); node 0 is the root. */
static int read_program(PyObject *nodes, int n_slots, Program *prog) {
    memset(prog, 0, sizeof *prog);
    if (!PyTuple_Check(nodes) || PyTuple_Size(nodes) < 1) {
        PyErr_SetString(PyExc_TypeError, "plan: a non-empty tuple of nodes");
        return -1;
    }
    Py_ssize_t n = PyTuple_Size(nodes), total = 0;
    prog->nodes = calloc((size_t)n, sizeof(Node));
    if (prog->nodes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    prog->n_nodes = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GetItem(nodes, i);
        PyObject *kids = item && PyTuple_Check(item) && PyTuple_Size(item) == 5 ? PyTuple_GetItem(item, 4) : NULL;
        if (kids == NULL || !PyTuple_Check(kids))
            goto bad;
        total += PyTuple_Size(kids);
    }
    prog->child_store = calloc((size_t)total + 1, sizeof(int));
    if (prog->child_store == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    int *next = prog->child_store;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GetItem(nodes, i);
        Node *node = &prog->nodes[i];
        node->kind = (int)PyLong_AsLong(PyTuple_GetItem(item, 0));
        node->slot = (int)PyLong_AsLong(PyTuple_GetItem(item, 1));
        char *a, *b;
        if (PyErr_Occurred() || PyBytes_AsStringAndSize(PyTuple_GetItem(item, 2), &a, &node->a_len) < 0 ||
            PyBytes_AsStringAndSize(PyTuple_GetItem(item, 3), &b, &node->b_len) < 0)
            goto fail;
        node->a = a;
        node->b = b;
        PyObject *kids = PyTuple_GetItem(item, 4);
        node->n_children = (int)PyTuple_Size(kids);
        node->children = next;
        for (int k = 0; k < node->n_children; k++) {
            long child = PyLong_AsLong(PyTuple_GetItem(kids, k));
            if (PyErr_Occurred())
                goto fail;
            if (child <= i || child >= n)
                goto bad;
            *next++ = (int)child;
        }
        if (node->kind < CONST || node->kind > SPLIT || node->slot >= n_slots ||
            (node->kind == SPLIT && (node->a_len < 1 || node->n_children < 2 || node->n_children > MAX_PARTS)))
            goto bad;
    }
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "plan: a malformed node");
fail:
    free_program(prog);
    return -1;
}

/* ---- The input: the line column's Arrow arrays ---- */

static int64_t count_data_buffers(const struct ArrowArray *a, char kind) {
    return kind == 'v' ? a->n_buffers - 3 : 1;
}

static int is_valid(const struct ArrowArray *a, int64_t i) {
    const uint8_t *bits = a->buffers[0];
    int64_t j = a->offset + i;
    return bits == NULL || a->null_count == 0 || (bits[j >> 3] >> (j & 7)) & 1;
}

/* The i-th line of array a, whose data buffers start at global index base. */
static int get_line(const struct ArrowArray *a, char kind, int64_t base, int64_t i, Line *line, int64_t *len) {
    if (!is_valid(a, i))
        return 0;
    int64_t j = a->offset + i;
    if (kind == 'v') {
        const uint8_t *v = (const uint8_t *)a->buffers[1] + 16 * j;
        int32_t n, buffer, at;
        memcpy(&n, v, 4);
        *len = n;
        if (n <= 12) {
            line->data = v + 4;
            line->buffer = -1;
            line->offset = 0;
        } else {
            memcpy(&buffer, v + 8, 4);
            memcpy(&at, v + 12, 4);
            line->data = (const uint8_t *)a->buffers[2 + buffer] + at;
            line->buffer = (int32_t)(base + buffer);
            line->offset = at;
        }
    } else {
        int64_t from, to;
        if (kind == 'u') {
            const int32_t *o = a->buffers[1];
            from = o[j];
            to = o[j + 1];
        } else {
            const int64_t *o = a->buffers[1];
            from = o[j];
            to = o[j + 1];
        }
        *len = to - from;
        line->data = (const uint8_t *)a->buffers[2] + from;
        line->buffer = (int32_t)base;
        line->offset = from;
        if (to > INT32_MAX)  /* a view's offset is 32 bits: such a line goes to the regex */
            return 0;
    }
    return 1;
}

static int64_t buffer_size(const struct ArrowArray *a, char kind, int64_t k) {
    if (kind == 'v') {
        const int64_t *sizes = a->buffers[a->n_buffers - 1];
        return sizes[k];
    }
    int64_t end = a->offset + a->length;
    if (kind == 'u')
        return ((const int32_t *)a->buffers[1])[end];
    return ((const int64_t *)a->buffers[1])[end];
}

static void *fail_inputs(struct ArrowArray *inputs, int n, PyObject *exc, const char *msg) {
    for (int i = 0; i < n; i++)
        if (inputs[i].release)
            inputs[i].release(&inputs[i]);
    free(inputs);
    if (exc)
        PyErr_SetString(exc, msg);
    return NULL;
}

/* Move the stream's arrays out; each one's type letter into *kinds. */
static struct ArrowArray *take_stream(PyObject *capsule, int *n_out, char **kinds_out) {
    struct ArrowArrayStream *stream = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (stream == NULL)
        return NULL;
    if (stream->release == NULL) {
        PyErr_SetString(PyExc_ValueError, "lines: the stream was already consumed");
        return NULL;
    }
    struct ArrowSchema schema;
    memset(&schema, 0, sizeof schema);
    if (stream->get_schema(stream, &schema) != 0) {
        PyErr_SetString(PyExc_ValueError, "lines: the stream has no schema");
        return NULL;
    }
    char kind = 0;
    if (strcmp(schema.format, "vu") == 0)
        kind = 'v';
    else if (strcmp(schema.format, "u") == 0)
        kind = 'u';
    else if (strcmp(schema.format, "U") == 0)
        kind = 'U';
    schema.release(&schema);
    if (!kind) {
        PyErr_SetString(PyExc_TypeError, "lines: an Arrow string column (string_view, string or large_string)");
        return NULL;
    }
    int n = 0, cap = 4;
    struct ArrowArray *arrays = calloc((size_t)cap, sizeof(struct ArrowArray));
    if (arrays == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            struct ArrowArray *more = realloc(arrays, (size_t)cap * 2 * sizeof(struct ArrowArray));
            if (more == NULL)
                return fail_inputs(arrays, n, PyExc_MemoryError, "lines: out of memory");
            arrays = more;
            cap *= 2;
        }
        memset(&arrays[n], 0, sizeof(struct ArrowArray));
        if (stream->get_next(stream, &arrays[n]) != 0)
            return fail_inputs(arrays, n, PyExc_ValueError, "lines: the stream failed");
        if (arrays[n].release == NULL)
            break;
        n++;
    }
    stream->release(stream);
    *kinds_out = malloc((size_t)n + 1);
    if (*kinds_out == NULL)
        return fail_inputs(arrays, n, PyExc_MemoryError, "lines: out of memory");
    memset(*kinds_out, kind, (size_t)n);
    *n_out = n;
    return arrays;
}

/* ---- The result: a struct array (_why, then one column per slot) over the input's buffers ---- */

/* Why a line is or is not vouched for: the plan's separator counts failed (polars' plan would refuse
 * it too: the regex reads it), or a value was left to polars' casts (its plan reads it). */
enum { VOUCHED = 0, REFUSED = 1, UNDECIDED = 2 };

typedef struct {
    volatile long refs;       /* the parent and each child array hold one */
    struct ArrowArray *inputs;
    int n_inputs;
    int n_slots;
    int64_t n_rows;
    int64_t n_buffers;        /* data buffers of all inputs, in order */
    uint8_t *why;             /* per line: VOUCHED, REFUSED or UNDECIDED */
    Slot *slots;
    const void **buffers;     /* per child: its buffer pointers */
    int64_t *sizes;           /* the inputs' data-buffer sizes (string_view's variadic sizes) */
    struct ArrowArray *child_arrays;
    struct ArrowArray **child_ptrs;
    struct ArrowArray parent;
} Result;

static void free_result(Result *r) {
    for (int i = 0; i < r->n_inputs; i++)
        if (r->inputs[i].release)
            r->inputs[i].release(&r->inputs[i]);
    free(r->inputs);
    if (r->slots)
        for (int i = 0; i < r->n_slots; i++) {
            free(r->slots[i].valid);
            free(r->slots[i].data);
        }
    free(r->slots);
    free(r->why);
    free((void *)r->buffers);
    free(r->sizes);
    free(r->child_arrays);
    free(r->child_ptrs);
    free(r);
}

static void result_decref(Result *r) {
    if (decref_count(&r->refs) == 0)
        free_result(r);
}

static void release_child(struct ArrowArray *a) {
    Result *r = a->private_data;
    a->release = NULL;
    result_decref(r);
}

static void release_parent(struct ArrowArray *a) {
    Result *r = a->private_data;
    for (int64_t i = 0; i < a->n_children; i++)
        if (a->children[i]->release)
            a->children[i]->release(a->children[i]);
    a->release = NULL;
    result_decref(r);
}

typedef struct {
    struct ArrowSchema parent;
    struct ArrowSchema *children;
    struct ArrowSchema **child_ptrs;
    char *names;
} SchemaStore;

static void release_schema_child(struct ArrowSchema *s) { s->release = NULL; }

static void release_schema(struct ArrowSchema *s) {
    SchemaStore *st = s->private_data;
    s->release = NULL;
    free(st->children);
    free(st->child_ptrs);
    free(st->names);
    free(st);
}

static void capsule_schema_free(PyObject *capsule) {  /* the capsule owns the struct, release its contents */
    struct ArrowSchema *s = PyCapsule_GetPointer(capsule, "arrow_schema");
    if (s && s->release)
        s->release(s);
    free(s);
}

static void capsule_array_free(PyObject *capsule) {
    struct ArrowArray *a = PyCapsule_GetPointer(capsule, "arrow_array");
    if (a && a->release)
        a->release(a);
    free(a);
}

static const char *FORMATS[] = {"vu", "l", "tsu:UTC"};

/* _why (uint8), then _s0, _s1… in each slot's type. */
static SchemaStore *make_schema(const Slot *slots, int n_slots) {
    SchemaStore *st = calloc(1, sizeof *st);
    int n = n_slots + 1;
    if (st == NULL)
        return NULL;
    st->children = calloc((size_t)n, sizeof(struct ArrowSchema));
    st->child_ptrs = calloc((size_t)n, sizeof(struct ArrowSchema *));
    st->names = calloc((size_t)n, 16);
    if (!st->children || !st->child_ptrs || !st->names) {
        free(st->children);
        free(st->child_ptrs);
        free(st->names);
        free(st);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        struct ArrowSchema *c = &st->children[i];
        char *name = st->names + 16 * i;
        if (i == 0)
            strcpy(name, "_why");
        else
            snprintf(name, 16, "_s%d", i - 1);
        c->format = i == 0 ? "C" : FORMATS[slots[i - 1].mode];
        c->name = name;
        c->flags = ARROW_FLAG_NULLABLE;
        c->release = release_schema_child;
        st->child_ptrs[i] = c;
    }
    st->parent.format = "+s";
    st->parent.name = "";
    st->parent.n_children = n;
    st->parent.children = st->child_ptrs;
    st->parent.release = release_schema;
    st->parent.private_data = st;
    return st;
}

static void cut_lines(const Program *prog, Result *r, const char *kinds, const int64_t *bases) {
    Out out = {r->slots, 0, 0};
    for (int c = 0; c < r->n_inputs; c++) {
        const struct ArrowArray *a = &r->inputs[c];
        for (int64_t i = 0; i < a->length; i++, out.row++) {
            Line line;
            int64_t len;
            out.undecided = 0;
            int walked = get_line(a, kinds[c], bases[c], i, &line, &len) && walk(prog, 0, &line, 0, len, &out);
            r->why[out.row] = (uint8_t)(!walked ? REFUSED : out.undecided ? UNDECIDED : VOUCHED);
            if (r->why[out.row] == VOUCHED)
                continue;
            /* Not vouched for: the caller reads the line again. Its values here are null, and what
             * was cut before the walk gave up is undone, so every view stays a valid one. */
            for (int s = 0; s < r->n_slots; s++) {
                Slot *slot = &r->slots[s];
                int width = slot->mode == TEXT ? 16 : 8;
                memset(slot->data + out.row * width, 0, (size_t)width);
                slot->valid[out.row >> 3] &= (uint8_t)~(1u << (out.row & 7));
            }
        }
    }
}

/* slots: tuple of (mode, flags). */
static Slot *read_slots(PyObject *spec, int *n_out) {
    if (!PyTuple_Check(spec) || PyTuple_Size(spec) > 4096) {
        PyErr_SetString(PyExc_TypeError, "slots: a tuple of at most 4096 (mode, flags)");
        return NULL;
    }
    int n = (int)PyTuple_Size(spec);
    Slot *slots = calloc((size_t)n + 1, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        PyObject *item = PyTuple_GetItem(spec, i);
        if (!PyTuple_Check(item) || PyTuple_Size(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "slots: a tuple of at most 4096 (mode, flags)");
            free(slots);
            return NULL;
        }
        slots[i].mode = (int)PyLong_AsLong(PyTuple_GetItem(item, 0));
        slots[i].flags = (int)PyLong_AsLong(PyTuple_GetItem(item, 1));
        if (PyErr_Occurred() || slots[i].mode < TEXT || slots[i].mode > TIME) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "slots: mode 0 (text), 1 (integer) or 2 (time)");
            free(slots);
            return NULL;
        }
    }
    *n_out = n;
    return slots;
}

/* Allocate the result's buffers; 0 on success. */
static int allocate(Result *r, const struct ArrowArray *inputs, const char *kinds, const int64_t *bases) {
    int64_t per_text = 3 + r->n_buffers;
    r->why = calloc((size_t)r->n_rows + 1, 1);
    /* every child's buffer pointers: _why's 2, at most 3 + data buffers a slot, the parent's 1 */
    r->buffers = calloc((size_t)(2 + per_text * r->n_slots + 1), sizeof(void *));
    r->sizes = calloc((size_t)r->n_buffers + 1, sizeof(int64_t));
    r->child_arrays = calloc((size_t)r->n_slots + 1, sizeof(struct ArrowArray));
    r->child_ptrs = calloc((size_t)r->n_slots + 1, sizeof(struct ArrowArray *));
    if (!r->why || !r->buffers || !r->sizes || !r->child_arrays || !r->child_ptrs)
        return -1;
    for (int s = 0; s < r->n_slots; s++) {
        Slot *slot = &r->slots[s];
        slot->valid = calloc((size_t)(r->n_rows / 8 + 1), 1);
        slot->data = malloc((size_t)(r->n_rows ? r->n_rows : 1) * (slot->mode == TEXT ? 16 : 8));
        if (slot->valid == NULL || slot->data == NULL)
            return -1;
    }
    for (int c = 0; c < r->n_inputs; c++)
        for (int64_t k = 0; k < count_data_buffers(&inputs[c], kinds[c]); k++)
            r->sizes[bases[c] + k] = buffer_size(&inputs[c], kinds[c], k);
    return 0;
}

static int64_t count_nulls(const uint8_t *valid, int64_t n) {
    int64_t set = 0;
    for (int64_t i = 0; i < n / 8; i++)
        for (unsigned x = valid[i]; x; x &= x - 1)
            set++;
    for (int64_t i = n / 8 * 8; i < n; i++)
        set += (valid[i >> 3] >> (i & 7)) & 1;
    return n - set;
}

static void assemble(Result *r, const char *kinds, const int64_t *bases) {
    struct ArrowArray *ok = &r->child_arrays[0];
    const void **b = r->buffers;
    b[0] = NULL;
    b[1] = r->why;
    b += 2;
    *ok = (struct ArrowArray){.length = r->n_rows, .n_buffers = 2, .buffers = r->buffers,
                              .release = release_child, .private_data = r};
    r->child_ptrs[0] = ok;
    for (int s = 0; s < r->n_slots; s++) {
        Slot *slot = &r->slots[s];
        struct ArrowArray *child = &r->child_arrays[1 + s];
        const void **own = b;
        b[0] = slot->valid;
        b[1] = slot->data;
        int64_t n_buffers = 2;
        if (slot->mode == TEXT) {
            for (int c = 0; c < r->n_inputs; c++)
                for (int64_t k = 0; k < count_data_buffers(&r->inputs[c], kinds[c]); k++)
                    b[2 + bases[c] + k] = kinds[c] == 'v' ? r->inputs[c].buffers[2 + k] : r->inputs[c].buffers[2];
            b[2 + r->n_buffers] = r->sizes;
            n_buffers = 3 + r->n_buffers;
        }
        b += n_buffers;
        *child = (struct ArrowArray){.length = r->n_rows, .null_count = count_nulls(slot->valid, r->n_rows), .n_buffers = n_buffers,
                                     .buffers = own, .release = release_child, .private_data = r};
        r->child_ptrs[1 + s] = child;
    }
    r->parent = (struct ArrowArray){.length = r->n_rows, .n_buffers = 1, .buffers = b,
                                    .n_children = r->n_slots + 1, .children = r->child_ptrs,
                                    .release = release_parent, .private_data = r};
    b[0] = NULL;
}

static PyObject *cut(PyObject *self, PyObject *args) {
    PyObject *capsule, *nodes, *spec;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &capsule, &nodes, &spec))
        return NULL;
    int n_slots = 0;
    Slot *slots = read_slots(spec, &n_slots);
    if (slots == NULL)
        return NULL;
    Program prog;
    if (read_program(nodes, n_slots, &prog) < 0) {
        free(slots);
        return NULL;
    }
    int n_inputs = 0;
    char *kinds = NULL;
    struct ArrowArray *inputs = take_stream(capsule, &n_inputs, &kinds);
    if (inputs == NULL) {
        free(slots);
        free_program(&prog);
        return NULL;
    }
    Result *r = calloc(1, sizeof *r);
    int64_t *bases = calloc((size_t)n_inputs + 1, sizeof(int64_t));
    SchemaStore *schema = make_schema(slots, n_slots);
    struct ArrowArray *array = malloc(sizeof *array);
    struct ArrowSchema *schema_out = malloc(sizeof *schema_out);
    if (r == NULL || bases == NULL || schema == NULL || array == NULL || schema_out == NULL) {
        free(r);
        r = NULL;
        goto nomem;
    }
    r->refs = 2 + n_slots;
    r->inputs = inputs;
    r->n_inputs = n_inputs;
    r->slots = slots;
    r->n_slots = n_slots;
    for (int c = 0; c < n_inputs; c++) {
        bases[c] = r->n_buffers;
        r->n_buffers += count_data_buffers(&inputs[c], kinds[c]);
        r->n_rows += inputs[c].length;
    }
    if (allocate(r, inputs, kinds, bases) < 0)
        goto nomem;

    Py_BEGIN_ALLOW_THREADS
    cut_lines(&prog, r, kinds, bases);
    Py_END_ALLOW_THREADS

    assemble(r, kinds, bases);
    free(bases);
    free(kinds);
    free_program(&prog);
    *array = r->parent;           /* moved: the capsules' copies are the ones released */
    r->parent.release = NULL;
    *schema_out = schema->parent;
    PyObject *s_cap = PyCapsule_New(schema_out, "arrow_schema", capsule_schema_free);
    if (s_cap == NULL) {
        schema_out->release(schema_out);
        free(schema_out);
    }
    PyObject *a_cap = s_cap ? PyCapsule_New(array, "arrow_array", capsule_array_free) : NULL;
    if (a_cap == NULL) {
        Py_XDECREF(s_cap);
        array->release(array);
        free(array);
        return NULL;
    }
    return Py_BuildValue("(NN)", s_cap, a_cap);
nomem:
    if (r) {
        r->refs = 1;
        free_result(r);  /* releases the inputs and frees the slots */
    } else {
        fail_inputs(inputs, n_inputs, NULL, NULL);
        free(slots);
    }
    if (schema)
        schema->parent.release(&schema->parent);
    free(array);
    free(schema_out);
    free(bases);
    free(kinds);
    free_program(&prog);
    return PyErr_NoMemory();
}

static PyMethodDef methods[] = {
    {"cut", cut, METH_VARARGS,
     "cut(lines_stream_capsule, plan_nodes, slots) -> (schema_capsule, array_capsule): the plan walked over "
     "every line; a struct array of _why (0 vouched for, 1 refused by the plan, 2 a value left to polars) and one column per slot ((mode, flags): 0 text, 1 integer, 2 time)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "meshlog.parse._scanner", "The split plan walked in C (see scanner.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scanner(void) { return PyModule_Create(&module); }
