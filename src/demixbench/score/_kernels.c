/* Compiled inner loop of the exact BSS Eval v4 scorer (demixbench.score.bss_eval): pass 2's
 * projections of the reference spectra through the filter spectra and the five Parseval energies
 * per frame, in one sweep over the spectra (see demixbench/score/kernels.py for the contract).
 *
 * Built by `pip install` (setup.py); the arrays come in through the buffer protocol (no numpy
 * headers), C-contiguous, and the GIL is released while the loop runs, so the scorer's worker
 * threads run it side by side.
 *
 * Floating-point semantics: IEEE double, compiled with -ffp-contract=off and without fast-math,
 * so every sum is taken in the order the loops state (each frame's energies over the bins in
 * order), whatever the number of frames per call or of threads, and on any x86-64 or ARM CPU.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    double re, im;
} cplx;

static void frame_energies_loop(const cplx *spectra, Py_ssize_t n_frames, Py_ssize_t n_bins, Py_ssize_t m,
                                Py_ssize_t n_chan, const cplx *h, const cplx *g, const double *weights,
                                double *out, double *scratch) {
    /* spectra (K, 2M, F); h (F, M, M); g (F, C, M); weights (F,); out (K, 5, M) zeroed;
     * scratch: 6M doubles (the frame's spectra at one bin, and P_all). */
    double *s_re = scratch, *s_im = scratch + 2 * m, *pa_re = scratch + 4 * m, *pa_im = scratch + 5 * m;
    for (Py_ssize_t f = 0; f < n_bins; f++) {
        const double w = weights[f];
        const cplx *hf = h + f * m * m, *gf = g + f * n_chan * m;
        for (Py_ssize_t k = 0; k < n_frames; k++) {
            const cplx *x = spectra + k * 2 * m * n_bins + f;
            for (Py_ssize_t p = 0; p < 2 * m; p++) {
                s_re[p] = x[p * n_bins].re;
                s_im[p] = x[p * n_bins].im;
            }
            for (Py_ssize_t o = 0; o < m; o++) pa_re[o] = pa_im[o] = 0.0;
            for (Py_ssize_t p = 0; p < m; p++) {
                const double a = s_re[p], b = s_im[p];
                const cplx *row = hf + p * m;
                for (Py_ssize_t o = 0; o < m; o++) {
                    pa_re[o] += a * row[o].re - b * row[o].im;
                    pa_im[o] += a * row[o].im + b * row[o].re;
                }
            }
            double *e = out + k * 5 * m;
            for (Py_ssize_t o = 0; o < m; o++) {
                const Py_ssize_t first = (o / n_chan) * n_chan; /* channel 0 of o's own reference */
                double own_re = 0.0, own_im = 0.0;
                for (Py_ssize_t c = 0; c < n_chan; c++) {
                    const double a = s_re[first + c], b = s_im[first + c];
                    const cplx v = gf[c * m + o];
                    own_re += a * v.re - b * v.im;
                    own_im += a * v.im + b * v.re;
                }
                const double all_re = pa_re[o], all_im = pa_im[o];
                const double artif_re = s_re[m + o] - all_re, artif_im = s_im[m + o] - all_im;
                const double interf_re = all_re - own_re, interf_im = all_im - own_im;
                const double spat_re = own_re - s_re[o], spat_im = own_im - s_im[o];
                e[0 * m + o] += w * (all_re * all_re + all_im * all_im);
                e[1 * m + o] += w * (own_re * own_re + own_im * own_im);
                e[2 * m + o] += w * (artif_re * artif_re + artif_im * artif_im);
                e[3 * m + o] += w * (interf_re * interf_re + interf_im * interf_im);
                e[4 * m + o] += w * (spat_re * spat_re + spat_im * spat_im);
            }
        }
    }
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
    if (get_array(o_h, &h, 3, "Zd", 0, "h") < 0) goto fail_h;
    if (get_array(o_g, &g, 3, "Zd", 0, "g") < 0) goto fail_g;
    if (get_array(o_weights, &weights, 1, "d", 0, "weights") < 0) goto fail_w;
    if (get_array(o_out, &out, 3, "d", 1, "out") < 0) goto fail_o;

    const Py_ssize_t n_bins = spectra.shape[2], m = h.shape[1], n_chan = g.shape[1];
    if (spectra.shape[1] != 2 * m || h.shape[0] != n_bins || h.shape[2] != m || g.shape[0] != n_bins ||
        g.shape[2] != m || n_chan < 1 || m % n_chan != 0 || weights.shape[0] != n_bins || out.shape[1] != 5 ||
        out.shape[2] != m || n_frames < 0 || n_frames > spectra.shape[0] || n_frames > out.shape[0]) {
        PyErr_SetString(PyExc_ValueError,
                        "frame_energies: shapes do not fit: spectra (K, 2M, F), h (F, M, M), g (F, C, M), "
                        "weights (F,), out (K, 5, M), 0 <= n_frames <= K");
        goto fail;
    }
    double *scratch = PyMem_RawMalloc(6 * (size_t)(m > 0 ? m : 1) * sizeof(double));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    memset(out.buf, 0, (size_t)n_frames * 5 * m * sizeof(double));
    frame_energies_loop(spectra.buf, n_frames, n_bins, m, n_chan, h.buf, g.buf, weights.buf, out.buf, scratch);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(scratch);
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

static PyMethodDef methods[] = {
    {"frame_energies", frame_energies, METH_VARARGS,
     "frame_energies(spectra, n_frames, h, g, weights, out): pass 2's Parseval energies of a chunk "
     "of frames (see demixbench.score.kernels)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Compiled inner loop of the fast scorer.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
