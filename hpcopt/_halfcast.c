/* float32 <-> float16 conversion with the x86 F16C instructions.
 *
 * NumPy converts to float16 one element at a time (about 1 GB/s here), and some 25x
 * slower when results are float16 subnormals, as gradients of size 1e-5 are. F16C
 * converts eight elements per instruction at memory speed, subnormals included, with
 * the same round-to-nearest-even. Built only on x86-64 and optional: when it is missing
 * or the CPU lacks F16C, hpcopt falls back to NumPy.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define F16C_TARGET __attribute__((target("avx,f16c")))

/* Convert n floats; return the largest magnitude seen and whether any was NaN. */
F16C_TARGET static float to_half(const float *src, uint16_t *dst, Py_ssize_t n, int *nan)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 top = _mm256_setzero_ps(), unordered = _mm256_setzero_ps();
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(src + i);
        top = _mm256_max_ps(top, _mm256_andnot_ps(sign, x));
        unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    }
    float lanes[8], flags[8], best = 0.0f;
    _mm256_storeu_ps(lanes, top);
    _mm256_storeu_ps(flags, unordered);
    *nan = 0;
    for (int k = 0; k < 8; k++) {
        best = lanes[k] > best ? lanes[k] : best;
        *nan |= flags[k] != 0.0f;
    }
    for (; i < n; i++) {
        float x = src[i];
        __m128 one = _mm_set_ss(x);
        dst[i] = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(one, _MM_FROUND_TO_NEAREST_INT), 0);
        *nan |= isnan(x);
        best = fabsf(x) > best ? fabsf(x) : best;
    }
    return best;
}

F16C_TARGET static void from_half(const uint16_t *src, float *dst, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(src[i])));
}

/* dst += src in half precision: widen both, add in float32, round to nearest even
 * (what NumPy's float16 add computes, one element at a time). */
F16C_TARGET static void add_half(uint16_t *dst, const uint16_t *src, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(dst + i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i)));
        __m128i sum = _mm256_cvtps_ph(_mm256_add_ps(a, b), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), sum);
    }
    for (; i < n; i++) {
        float a = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(dst[i])));
        float b = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(src[i])));
        __m128i h = _mm_cvtps_ph(_mm_set_ss(a + b), _MM_FROUND_TO_NEAREST_INT);
        dst[i] = (uint16_t)_mm_extract_epi16(h, 0);
    }
}

/* Borrow a contiguous buffer of n elements of `itemsize` bytes, or set an exception. */
static int borrow(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->len % itemsize != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "buffer size is not a whole number of elements");
        return -1;
    }
    return 0;
}

static int pair(PyObject *args, Py_buffer *src, Py_ssize_t src_size, Py_buffer *dst,
                Py_ssize_t dst_size)
{
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "OO", &a, &b) || borrow(a, src, src_size, 0) < 0)
        return -1;
    if (borrow(b, dst, dst_size, 1) < 0) {
        PyBuffer_Release(src);
        return -1;
    }
    if (src->len / src_size != dst->len / dst_size) {
        PyBuffer_Release(src);
        PyBuffer_Release(dst);
        PyErr_SetString(PyExc_ValueError, "source and destination differ in length");
        return -1;
    }
    return 0;
}

static PyObject *py_to_half(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    int nan = 0;
    float top;
    if (pair(args, &src, 4, &dst, 2) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    top = to_half((const float *)src.buf, (uint16_t *)dst.buf, src.len / 4, &nan);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return Py_BuildValue("(dO)", (double)top, nan ? Py_True : Py_False);
}

static PyObject *py_from_half(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    if (pair(args, &src, 2, &dst, 4) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    from_half((const uint16_t *)src.buf, (float *)dst.buf, src.len / 2);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_NONE;
}

static PyObject *py_add_half(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "OO", &a, &b))
        return NULL;
    /* Arguments are (dst, src); pair() borrows (readable, writable). */
    PyObject *swapped = Py_BuildValue("(OO)", b, a);
    if (swapped == NULL)
        return NULL;
    int failed = pair(swapped, &src, 2, &dst, 2);
    Py_DECREF(swapped);
    if (failed < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    add_half((uint16_t *)dst.buf, (const uint16_t *)src.buf, src.len / 2);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_NONE;
}

static PyObject *py_supported(PyObject *self, PyObject *noargs)
{
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c"));
}

static PyMethodDef methods[] = {
    {"to_half", py_to_half, METH_VARARGS,
     "to_half(float32 src, float16 dst) -> (max |x|, any NaN): round to nearest even."},
    {"from_half", py_from_half, METH_VARARGS, "from_half(float16 src, float32 dst)."},
    {"add_half", py_add_half, METH_VARARGS, "add_half(float16 dst, float16 src): dst += src."},
    {"supported", py_supported, METH_NOARGS, "Whether this CPU has AVX and F16C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_halfcast",
                                    "float32 <-> float16 with F16C.", -1, methods};

PyMODINIT_FUNC PyInit__halfcast(void) { return PyModule_Create(&module); }
