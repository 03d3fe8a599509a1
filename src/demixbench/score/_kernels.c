/* Compiled inner loops of the exact BSS Eval v4 scorer (demixbench.score.bss_eval): pass 1's
 * sums of cross spectra over the blocks, and pass 2's projections of the reference spectra
 * through the filter spectra with the five Parseval energies per frame, each one sweep over the
 * spectra as numpy's rfft writes them; the framing of the input and the frames' time-domain
 * energies; and the unpacking of pass 1's sums (see demixbench/score/kernels.py for the
 * contracts).
 *
 * Built by `pip install` (setup.py); the arrays come in through the buffer protocol (no numpy
 * headers), C-contiguous (the framing reads any strides), and the GIL is released while a loop
 * runs, so the scorer's worker threads run them side by side.
 *
 * Floating-point semantics: IEEE double, compiled with -ffp-contract=off and without fast-math,
 * the vector code written with vector extensions (no fused or add-sub instructions), so every sum
 * is taken in the order the loops state (over the bins or samples in order within each of the
 * LANES partial sums, then the partial sums in a fixed tree), whatever the number of frames per
 * call or of threads, and on any CPU whatever its vector width.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Bins per tile: the loop runs over LANES adjacent bins at once, one SIMD lane each. */
#define LANES 8
/* Tiles per block of the loops over bins: long runs of each channel's bins per frame for the
 * prefetcher, and the block's filters or sums in cache across the frames of a chunk. */
#define BLOCK_TILES 32

/* One clone per x86-64 vector width, picked at load time (GCC/clang ifunc): a module built on one
 * machine runs at its best on another. The clones compute the same numbers: every lane does the
 * same IEEE operations in the same order, and no multiply-add is fused (-ffp-contract=off). */
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif

/* LANES doubles, one SIMD vector with AVX-512 (two with AVX2, four with SSE2): GCC/clang vector
 * extensions, so each operation below is exactly the IEEE operation it states, lane by lane (no
 * pattern matching into fused or add-sub instructions, which GCC 12's auto-vectoriser did even
 * with -ffp-contract=off). */
typedef double vec __attribute__((vector_size(LANES * sizeof(double))));

/* The even and the odd lanes of two vectors (real and imaginary parts of LANES complex numbers):
 * __builtin_shufflevector from GCC 12 and in clang, __builtin_shuffle in older GCC. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12 && !defined(DEMIXBENCH_OLD_SHUFFLE))
#define EVEN_LANES(lo, hi) __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14)
#define ODD_LANES(lo, hi) __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15)
#else
typedef long long lane_index __attribute__((vector_size(LANES * sizeof(long long))));
#define EVEN_LANES(lo, hi) __builtin_shuffle(lo, hi, (lane_index){0, 2, 4, 6, 8, 10, 12, 14})
#define ODD_LANES(lo, hi) __builtin_shuffle(lo, hi, (lane_index){1, 3, 5, 7, 9, 11, 13, 15})
#endif

__attribute__((always_inline)) static inline vec load(const double *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

__attribute__((always_inline)) static inline void store(double *p, vec v) { memcpy(p, &v, sizeof v); }

/* The LANES partial sums a[0..LANES-1] added in the fixed tree every loop ends with. */
__attribute__((always_inline)) static inline double tree_sum(const double *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* The tile of LANES bins from f0 of the 2M channels of frame k, split into real and imaginary
 * parts: spectra (K, 2M, F) complex as (re, im) pairs; zeros past the last bin. */
__attribute__((always_inline)) static inline void load_tile(const double *spectra, Py_ssize_t k, Py_ssize_t m2,
                                                            Py_ssize_t n_bins, Py_ssize_t f0, vec *re, vec *im) {
    const Py_ssize_t valid = n_bins - f0 < LANES ? n_bins - f0 : LANES;
    double tail[2 * LANES];
    for (Py_ssize_t p = 0; p < m2; p++) {
        const double *x = spectra + 2 * ((k * m2 + p) * n_bins + f0);
        if (valid < LANES) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, x, 2 * valid * sizeof(double));
            x = tail;
        }
        const vec lo = load(x), hi = load(x + LANES);
        re[p] = EVEN_LANES(lo, hi);
        im[p] = ODD_LANES(lo, hi);
    }
}

VECTOR_CLONES
static void frame_energies_loop(const double *spectra, Py_ssize_t n_frames, Py_ssize_t n_bins, Py_ssize_t m,
                                Py_ssize_t n_chan, const double *h, const double *g, const double *weights,
                                double *out, double *lanes) {
    /* spectra (K, 2M, F) complex as (re, im) pairs; h (T, M, M, 2, LANES) and g (T, C, M, 2, LANES):
     * per tile of LANES bins, the real parts of the LANES bins, then their imaginary parts;
     * weights (T, LANES), 0 beyond the last bin; out (K, 5, M); lanes (K, 5, M, LANES) zeroed:
     * each bin's energy goes to the accumulator of its lane, bin f to lane f % LANES. */
    const Py_ssize_t n_tiles = (n_bins + LANES - 1) / LANES;
    vec s_re[2 * m], s_im[2 * m];
    /* Blocks of tiles, frame by frame within a block (see BLOCK_TILES). */
    for (Py_ssize_t block = 0; block < n_tiles; block += BLOCK_TILES)
    for (Py_ssize_t k = 0; k < n_frames; k++)
    for (Py_ssize_t t = block; t < block + BLOCK_TILES && t < n_tiles; t++) {
        const double *ht = h + t * m * m * 2 * LANES, *gt = g + t * n_chan * m * 2 * LANES;
        const vec w = load(weights + t * LANES); /* zero past the last bin, where the tile is zeros */
        load_tile(spectra, k, 2 * m, n_bins, t * LANES, s_re, s_im);
        double *e = lanes + k * 5 * m * LANES;
        for (Py_ssize_t o = 0; o < m; o++) {
            vec all_re = {0.0}, all_im = {0.0}, own_re = {0.0}, own_im = {0.0};
            for (Py_ssize_t p = 0; p < m; p++) {
                const double *hp = ht + (p * m + o) * 2 * LANES;
                const vec hr = load(hp), hi = load(hp + LANES);
                all_re += s_re[p] * hr - s_im[p] * hi;
                all_im += s_re[p] * hi + s_im[p] * hr;
            }
            const Py_ssize_t first = (o / n_chan) * n_chan; /* channel 0 of o's own reference */
            for (Py_ssize_t c = 0; c < n_chan; c++) {
                const double *gp = gt + (c * m + o) * 2 * LANES;
                const vec gr = load(gp), gi = load(gp + LANES);
                own_re += s_re[first + c] * gr - s_im[first + c] * gi;
                own_im += s_re[first + c] * gi + s_im[first + c] * gr;
            }
            const vec artif_re = s_re[m + o] - all_re, artif_im = s_im[m + o] - all_im;
            const vec interf_re = all_re - own_re, interf_im = all_im - own_im;
            const vec spat_re = own_re - s_re[o], spat_im = own_im - s_im[o];
            const vec energy[5] = {
                all_re * all_re + all_im * all_im,       own_re * own_re + own_im * own_im,
                artif_re * artif_re + artif_im * artif_im, interf_re * interf_re + interf_im * interf_im,
                spat_re * spat_re + spat_im * spat_im,
            };
            for (int i = 0; i < 5; i++) {
                double *acc = e + (i * m + o) * LANES;
                store(acc, load(acc) + w * energy[i]);
            }
        }
    }
    /* the lanes' sums, in a fixed tree */
    for (Py_ssize_t i = 0; i < n_frames * 5 * m; i++) out[i] = tree_sum(lanes + i * LANES);
}

/* A C-contiguous buffer of `ndim` dimensions and the given item format ("Zd" complex128 or "d"). */
static int get_array(PyObject *obj, Py_buffer *view, int ndim, const char *format, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->ndim != ndim || view->format == NULL || strcmp(view->format, format) != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous %d-d array of format %s, got %d-d %s", name, ndim,
                     format, view->ndim, view->format ? view->format : "?");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *frame_energies(PyObject *self, PyObject *args) {
    PyObject *o_spectra, *o_h, *o_g, *o_weights, *o_out;
    Py_ssize_t n_frames;
    if (!PyArg_ParseTuple(args, "OnOOOO", &o_spectra, &n_frames, &o_h, &o_g, &o_weights, &o_out)) return NULL;
    Py_buffer spectra, h, g, weights, out;
    if (get_array(o_spectra, &spectra, 3, "Zd", 0, "spectra") < 0) return NULL;
    if (get_array(o_h, &h, 5, "d", 0, "h") < 0) goto fail_h;
    if (get_array(o_g, &g, 5, "d", 0, "g") < 0) goto fail_g;
    if (get_array(o_weights, &weights, 2, "d", 0, "weights") < 0) goto fail_w;
    if (get_array(o_out, &out, 3, "d", 1, "out") < 0) goto fail_o;

    const Py_ssize_t n_bins = spectra.shape[2], m = h.shape[1], n_chan = g.shape[1];
    const Py_ssize_t n_tiles = (n_bins + LANES - 1) / LANES;
    if (spectra.shape[1] != 2 * m || h.shape[0] != n_tiles || h.shape[2] != m || h.shape[3] != 2 ||
        h.shape[4] != LANES || g.shape[0] != n_tiles || g.shape[2] != m || g.shape[3] != 2 || g.shape[4] != LANES ||
        n_chan < 1 || m % n_chan != 0 || weights.shape[0] != n_tiles || weights.shape[1] != LANES ||
        out.shape[1] != 5 || out.shape[2] != m || n_frames < 0 || n_frames > spectra.shape[0] ||
        n_frames > out.shape[0]) {
        PyErr_Format(PyExc_ValueError,
                     "frame_energies: shapes do not fit: spectra (K, 2M, F), h (T, M, M, 2, %d), g (T, C, M, 2, %d), "
                     "weights (T, %d), out (K, 5, M), T = ceil(F / %d), 0 <= n_frames <= K",
                     LANES, LANES, LANES, LANES);
        goto fail;
    }
    double *lanes = PyMem_RawCalloc((size_t)(n_frames > 0 ? n_frames : 1) * 5 * m * LANES, sizeof(double));
    if (lanes == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    if (m > 0) frame_energies_loop(spectra.buf, n_frames, n_bins, m, n_chan, h.buf, g.buf, weights.buf, out.buf, lanes);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(lanes);
    PyBuffer_Release(&out);
    PyBuffer_Release(&weights);
    PyBuffer_Release(&g);
    PyBuffer_Release(&h);
    PyBuffer_Release(&spectra);
    Py_RETURN_NONE;

fail:
    PyBuffer_Release(&out);
fail_o:
    PyBuffer_Release(&weights);
fail_w:
    PyBuffer_Release(&g);
fail_g:
    PyBuffer_Release(&h);
fail_h:
    PyBuffer_Release(&spectra);
    return NULL;
}

/* Pass 1: acc[t, p, q] += sum over the frames of conj(X_p) X_q, for the tiles [t0, t1). */
VECTOR_CLONES
static void cross_spectra_loop(const double *spectra, Py_ssize_t n_frames, Py_ssize_t n_bins, Py_ssize_t m,
                               Py_ssize_t t0, Py_ssize_t t1, double *acc) {
    /* spectra (K, 2M, F) complex as (re, im) pairs, as in frame_energies_loop; acc (T, M, 2M, 2,
     * LANES): per tile, reference p, channel q (M references, then M estimates), the real parts
     * of the tile's bins, then the imaginary parts. Only q >= p is computed: the block of two
     * references is Hermitian (the caller fills its lower half). */
    const Py_ssize_t m2 = 2 * m;
    vec x_re[m2], x_im[m2];
    for (Py_ssize_t block = t0; block < t1; block += BLOCK_TILES)
    for (Py_ssize_t k = 0; k < n_frames; k++)
    for (Py_ssize_t t = block; t < block + BLOCK_TILES && t < t1; t++) {
        load_tile(spectra, k, m2, n_bins, t * LANES, x_re, x_im);
        double *a = acc + t * m * m2 * 2 * LANES;
        for (Py_ssize_t p = 0; p < m; p++) {
            for (Py_ssize_t q = p; q < m2; q++) {
                double *cell = a + (p * m2 + q) * 2 * LANES;
                store(cell, load(cell) + (x_re[p] * x_re[q] + x_im[p] * x_im[q]));
                store(cell + LANES, load(cell + LANES) + (x_re[p] * x_im[q] - x_im[p] * x_re[q]));
            }
        }
    }
}

static PyObject *cross_spectra(PyObject *self, PyObject *args) {
    PyObject *o_spectra, *o_acc;
    Py_ssize_t n_frames, t0, t1;
    if (!PyArg_ParseTuple(args, "OnOnn", &o_spectra, &n_frames, &o_acc, &t0, &t1)) return NULL;
    Py_buffer spectra, acc;
    if (get_array(o_spectra, &spectra, 3, "Zd", 0, "spectra") < 0) return NULL;
    if (get_array(o_acc, &acc, 5, "d", 1, "acc") < 0) {
        PyBuffer_Release(&spectra);
        return NULL;
    }
    const Py_ssize_t n_bins = spectra.shape[2], m = acc.shape[1];
    const Py_ssize_t n_tiles = (n_bins + LANES - 1) / LANES;
    if (acc.shape[0] != n_tiles || spectra.shape[1] != 2 * m || acc.shape[2] != 2 * m || acc.shape[3] != 2 ||
        acc.shape[4] != LANES || n_frames < 0 || n_frames > spectra.shape[0] || t0 < 0 || t1 < t0 || t1 > n_tiles) {
        PyErr_Format(PyExc_ValueError,
                     "cross_spectra: shapes do not fit: spectra (K, 2M, F), acc (T, M, 2M, 2, %d), "
                     "T = ceil(F / %d), 0 <= n_frames <= K, 0 <= t0 <= t1 <= T",
                     LANES, LANES);
        PyBuffer_Release(&acc);
        PyBuffer_Release(&spectra);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (m > 0) cross_spectra_loop(spectra.buf, n_frames, n_bins, m, t0, t1, acc.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&acc);
    PyBuffer_Release(&spectra);
    Py_RETURN_NONE;
}

/* Stereo samples as decoded audio holds them, interleaved (x[2 i + c]), into two rows: one sweep
 * over the source instead of one per channel, vectorised (the conversions are exact). */
VECTOR_CLONES
static void deinterleave_float(const float *restrict x, Py_ssize_t n, double *restrict left, double *restrict right) {
    for (Py_ssize_t i = 0; i < n; i++) {
        left[i] = x[2 * i];
        right[i] = x[2 * i + 1];
    }
}

VECTOR_CLONES
static void deinterleave_double(const double *restrict x, Py_ssize_t n, double *restrict left, double *restrict right) {
    for (Py_ssize_t i = 0; i < n; i++) {
        left[i] = x[2 * i];
        right[i] = x[2 * i + 1];
    }
}

/* One channel's contiguous samples (planar audio: (sources, channels, samples) seen transposed). */
VECTOR_CLONES
static void widen_float(const float *restrict x, Py_ssize_t n, double *restrict row) {
    for (Py_ssize_t i = 0; i < n; i++) row[i] = x[i];
}

/* Framing: rows[j * C + c, i] = x[j, start + i, c] as double for i < n, zeros after; x (J, N, C)
 * float32 or float64 with any strides (in bytes). */
static void frame_rows_loop(const char *x, int is_float, Py_ssize_t n_src, Py_ssize_t n_chan, const Py_ssize_t *strides,
                            Py_ssize_t start, Py_ssize_t n, double *rows, Py_ssize_t width) {
    const Py_ssize_t item = is_float ? (Py_ssize_t)sizeof(float) : (Py_ssize_t)sizeof(double);
    const int interleaved = n_chan == 2 && strides[2] == item && strides[1] == 2 * item;
    for (Py_ssize_t j = 0; j < n_src; j++) {
        if (interleaved) {
            const char *src = x + j * strides[0] + start * strides[1];
            double *left = rows + 2 * j * width, *right = left + width;
            if (is_float)
                deinterleave_float((const float *)src, n, left, right);
            else
                deinterleave_double((const double *)src, n, left, right);
            memset(left + n, 0, (size_t)(width - n) * sizeof(double));
            memset(right + n, 0, (size_t)(width - n) * sizeof(double));
            continue;
        }
        for (Py_ssize_t c = 0; c < n_chan; c++) {
            double *row = rows + (j * n_chan + c) * width;
            const char *src = x + j * strides[0] + start * strides[1] + c * strides[2];
            const Py_ssize_t step = strides[1];
            if (is_float && step == item)
                widen_float((const float *)src, n, row);
            else if (step == item)
                memcpy(row, src, (size_t)n * sizeof(double));
            else if (is_float)
                for (Py_ssize_t i = 0; i < n; i++) row[i] = *(const float *)(src + i * step);
            else
                for (Py_ssize_t i = 0; i < n; i++) row[i] = *(const double *)(src + i * step);
            memset(row + n, 0, (size_t)(width - n) * sizeof(double));
        }
    }
}

static PyObject *frame_rows(PyObject *self, PyObject *args) {
    PyObject *o_x, *o_rows;
    Py_ssize_t start, n;
    if (!PyArg_ParseTuple(args, "OnnO", &o_x, &start, &n, &o_rows)) return NULL;
    Py_buffer x, rows;
    if (PyObject_GetBuffer(o_x, &x, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    const int is_float = x.format != NULL && strcmp(x.format, "f") == 0;
    if (x.ndim != 3 || x.format == NULL || !(is_float || strcmp(x.format, "d") == 0)) {
        PyErr_Format(PyExc_TypeError, "frame_rows: x: expected a 3-d float32 or float64 array, got %d-d %s", x.ndim,
                     x.format ? x.format : "?");
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_array(o_rows, &rows, 2, "d", 1, "rows") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    const Py_ssize_t n_src = x.shape[0], n_samples = x.shape[1], n_chan = x.shape[2], width = rows.shape[1];
    if (rows.shape[0] != n_src * n_chan || start < 0 || n < 0 || n > width || start + n > n_samples) {
        PyErr_SetString(PyExc_ValueError,
                        "frame_rows: shapes do not fit: x (J, N, C), rows (J*C, W), 0 <= n <= W, start + n <= N");
        PyBuffer_Release(&rows);
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    frame_rows_loop(x.buf, is_float, n_src, n_chan, x.strides, start, n, rows.buf, width);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&rows);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
}

/* Time-domain energies of a frame: per row, sum of s^2 and of (s_hat - s)^2 over n samples,
 * sample i to partial sum i % LANES, the partial sums added in a fixed tree. */
VECTOR_CLONES
static void frame_power_loop(const double *ref, const double *est, Py_ssize_t n_rows, Py_ssize_t width, Py_ssize_t n,
                             double *power, double *error) {
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        const double *s = ref + r * width, *e = est + r * width;
        vec ps = {0.0}, pe = {0.0};
        Py_ssize_t i = 0;
        for (; i + LANES <= n; i += LANES) {
            const vec a = load(s + i), d = load(e + i) - a;
            ps += a * a;
            pe += d * d;
        }
        double a_tail[LANES] = {0.0}, d_tail[LANES] = {0.0};
        for (Py_ssize_t l = 0; i + l < n; l++) {
            a_tail[l] = s[i + l];
            d_tail[l] = e[i + l] - s[i + l];
        }
        const vec a = load(a_tail), d = load(d_tail);
        ps += a * a;
        pe += d * d;
        double lanes_s[LANES], lanes_e[LANES];
        store(lanes_s, ps);
        store(lanes_e, pe);
        power[r] = tree_sum(lanes_s);
        error[r] = tree_sum(lanes_e);
    }
}

static PyObject *frame_power(PyObject *self, PyObject *args) {
    PyObject *o_frame, *o_out;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OnO", &o_frame, &n, &o_out)) return NULL;
    Py_buffer frame, out;
    if (get_array(o_frame, &frame, 3, "d", 0, "frame") < 0) return NULL;
    if (get_array(o_out, &out, 2, "d", 1, "out") < 0) {
        PyBuffer_Release(&frame);
        return NULL;
    }
    const Py_ssize_t n_rows = frame.shape[1], width = frame.shape[2];
    if (frame.shape[0] != 2 || out.shape[0] != 2 || out.shape[1] != n_rows || n < 0 || n > width) {
        PyErr_SetString(PyExc_ValueError, "frame_power: shapes do not fit: frame (2, R, W), out (2, R), 0 <= n <= W");
        PyBuffer_Release(&out);
        PyBuffer_Release(&frame);
        return NULL;
    }
    const double *ref = frame.buf;
    double *power = out.buf;
    Py_BEGIN_ALLOW_THREADS
    frame_power_loop(ref, ref + n_rows * width, n_rows, width, n, power, power + n_rows);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&frame);
    Py_RETURN_NONE;
}

/* cross_spectra's accumulator -> out[p, q, f] complex (M, 2M, F) for references p0 <= p < p1. */
static void unpack_loop(const double *acc, Py_ssize_t n_bins, Py_ssize_t m, Py_ssize_t p0, Py_ssize_t p1,
                        double *out) {
    const Py_ssize_t m2 = 2 * m, n_tiles = (n_bins + LANES - 1) / LANES;
    for (Py_ssize_t t = 0; t < n_tiles; t++) {
        const Py_ssize_t f0 = t * LANES, valid = n_bins - f0 < LANES ? n_bins - f0 : LANES;
        for (Py_ssize_t p = p0; p < p1; p++) {
            for (Py_ssize_t q = 0; q < m2; q++) {
                const double *cell = acc + ((t * m + p) * m2 + q) * 2 * LANES;
                double *dst = out + 2 * ((p * m2 + q) * n_bins + f0);
                for (Py_ssize_t l = 0; l < valid; l++) {
                    dst[2 * l] = cell[l];
                    dst[2 * l + 1] = cell[LANES + l];
                }
            }
        }
    }
}

static PyObject *unpack_cross_spectra(PyObject *self, PyObject *args) {
    PyObject *o_acc, *o_out;
    Py_ssize_t p0, p1;
    if (!PyArg_ParseTuple(args, "OOnn", &o_acc, &o_out, &p0, &p1)) return NULL;
    Py_buffer acc, out;
    if (get_array(o_acc, &acc, 5, "d", 0, "acc") < 0) return NULL;
    if (get_array(o_out, &out, 3, "Zd", 1, "out") < 0) {
        PyBuffer_Release(&acc);
        return NULL;
    }
    const Py_ssize_t m = acc.shape[1], n_bins = out.shape[2];
    if (acc.shape[0] != (n_bins + LANES - 1) / LANES || acc.shape[2] != 2 * m || acc.shape[3] != 2 ||
        acc.shape[4] != LANES || out.shape[0] != m || out.shape[1] != 2 * m || p0 < 0 || p1 < p0 || p1 > m) {
        PyErr_Format(PyExc_ValueError,
                     "unpack_cross_spectra: shapes do not fit: acc (T, M, 2M, 2, %d), out (M, 2M, F), "
                     "T = ceil(F / %d), 0 <= p0 <= p1 <= M",
                     LANES, LANES);
        PyBuffer_Release(&out);
        PyBuffer_Release(&acc);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    unpack_loop(acc.buf, n_bins, m, p0, p1, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&acc);
    Py_RETURN_NONE;
}

/* Filter spectra in frame_energies_loop's layout: out[t, r, k, 0, l] = Re x[r, k, t * LANES + l],
 * out[t, r, k, 1, l] = Im, zeros past the last bin. */
static void pack_loop(const double *x, Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t n_bins, double *out) {
    const Py_ssize_t n_tiles = (n_bins + LANES - 1) / LANES;
    for (Py_ssize_t t = 0; t < n_tiles; t++) {
        const Py_ssize_t f0 = t * LANES, valid = n_bins - f0 < LANES ? n_bins - f0 : LANES;
        for (Py_ssize_t rk = 0; rk < n_rows * n_cols; rk++) {
            const double *src = x + 2 * (rk * n_bins + f0);
            double *dst = out + (t * n_rows * n_cols + rk) * 2 * LANES;
            for (Py_ssize_t l = 0; l < LANES; l++) {
                dst[l] = l < valid ? src[2 * l] : 0.0;
                dst[LANES + l] = l < valid ? src[2 * l + 1] : 0.0;
            }
        }
    }
}

static PyObject *pack_spectra(PyObject *self, PyObject *args) {
    PyObject *o_x, *o_out;
    if (!PyArg_ParseTuple(args, "OO", &o_x, &o_out)) return NULL;
    Py_buffer x, out;
    if (get_array(o_x, &x, 3, "Zd", 0, "x") < 0) return NULL;
    if (get_array(o_out, &out, 5, "d", 1, "out") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    const Py_ssize_t n_rows = x.shape[0], n_cols = x.shape[1], n_bins = x.shape[2];
    if (out.shape[0] != (n_bins + LANES - 1) / LANES || out.shape[1] != n_rows || out.shape[2] != n_cols ||
        out.shape[3] != 2 || out.shape[4] != LANES) {
        PyErr_Format(PyExc_ValueError,
                     "pack_spectra: shapes do not fit: x (R, K, F), out (T, R, K, 2, %d), T = ceil(F / %d)", LANES,
                     LANES);
        PyBuffer_Release(&out);
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pack_loop(x.buf, n_rows, n_cols, n_bins, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"frame_energies", frame_energies, METH_VARARGS,
     "frame_energies(spectra, n_frames, h, g, weights, out): pass 2's Parseval energies of a chunk "
     "of frames (see demixbench.score.kernels)."},
    {"cross_spectra", cross_spectra, METH_VARARGS,
     "cross_spectra(spectra, n_frames, acc, t0, t1): pass 1's sums of cross spectra over a chunk of "
     "frames, for tiles t0..t1 (see demixbench.score.kernels)."},
    {"unpack_cross_spectra", unpack_cross_spectra, METH_VARARGS,
     "unpack_cross_spectra(acc, out, p0, p1): cross_spectra's sums as complex (M, 2M, F) rows "
     "(see demixbench.score.kernels)."},
    {"pack_spectra", pack_spectra, METH_VARARGS,
     "pack_spectra(x, out): complex (R, K, F) rows in frame_energies' tiles (T, R, K, 2, LANES) "
     "(see demixbench.score.kernels)."},
    {"frame_rows", frame_rows, METH_VARARGS,
     "frame_rows(x, start, n, rows): samples start..start+n of x (J, N, C) as float64 rows (J*C, W), "
     "zero-padded (see demixbench.score.kernels)."},
    {"frame_power", frame_power, METH_VARARGS,
     "frame_power(frame, n, out): per row, the energies of the reference and of the error over n "
     "samples (see demixbench.score.kernels)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Compiled inner loops of the fast scorer.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && PyModule_AddIntConstant(mod, "LANES", LANES) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
