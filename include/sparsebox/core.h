/* sparsebox core: status codes, error messages, dtypes, checked sizes, dense arrays, threads. */
#ifndef SPARSEBOX_CORE_H
#define SPARSEBOX_CORE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define SBX_API
#else
#define SBX_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status of every fallible call. The numbers are pinned: new kinds are only ever added at the end. */
typedef enum sbx_status {
    SBX_OK = 0,
    SBX_ERR_ARG = 1,         /* an argument breaks a documented rule (NULL, negative size, ...) */
    SBX_ERR_NOMEM = 2,       /* an allocation failed */
    SBX_ERR_OVERFLOW = 3,    /* a size does not fit in int64_t (or in size_t) */
    SBX_ERR_IO = 4,          /* a file could not be opened, read or written */
    SBX_ERR_FORMAT = 5,      /* a file or matrix is malformed (bad header, truncated body, ...) */
    SBX_ERR_UNSUPPORTED = 6  /* well-formed but not handled (complex Matrix Market, object .npy, ...) */
} sbx_status;

/* A fixed name for a status, e.g. "invalid argument". Never NULL. */
SBX_API const char *sbx_status_str(sbx_status status);

/* The message of the last failed call on this thread: it names the argument, the value and the rule
 * broken. Empty when no call has failed yet on this thread. Valid until the next failing call. */
SBX_API const char *sbx_last_error(void);

/* Element types. The numbers are pinned like sbx_status. */
typedef enum sbx_dtype {
    SBX_FLOAT32 = 0,
    SBX_FLOAT64 = 1,
    SBX_INT8 = 2,
    SBX_INT16 = 3,
    SBX_INT32 = 4,
    SBX_INT64 = 5,
    SBX_UINT8 = 6,
    SBX_UINT16 = 7,
    SBX_UINT32 = 8,
    SBX_UINT64 = 9,
    SBX_BOOL = 10
} sbx_dtype;

#define SBX_NUM_DTYPES 11

/* Size in bytes of one element; 0 for a value outside the enum. */
SBX_API size_t sbx_dtype_size(sbx_dtype dtype);
/* numpy's name ("float32", "int8", "bool", ...); "invalid" for a value outside the enum. */
SBX_API const char *sbx_dtype_name(sbx_dtype dtype);
/* Parses a name as printed by sbx_dtype_name (also "float" = float64, "double" = float64,
 * "int" = int64). */
SBX_API sbx_status sbx_dtype_parse(const char *name, sbx_dtype *out);

/* Checked size arithmetic: *out = a * b or a + b, SBX_ERR_OVERFLOW (and *out untouched) when the
 * result does not fit in int64_t. Negative operands are allowed; callers check signs themselves. */
SBX_API sbx_status sbx_mul_i64(int64_t a, int64_t b, int64_t *out);
SBX_API sbx_status sbx_add_i64(int64_t a, int64_t b, int64_t *out);
/* Number of elements of a shape: SBX_ERR_ARG for a negative extent or ndim outside [0, SBX_MAX_NDIM],
 * SBX_ERR_OVERFLOW when the product overflows. ndim = 0 gives 1 (a scalar). */
SBX_API sbx_status sbx_shape_numel(int ndim, const int64_t *shape, int64_t *out);

/* Dense row-major, contiguous array. */
#define SBX_MAX_NDIM 8
typedef struct sbx_array {
    sbx_dtype dtype;
    int ndim;                      /* 0 .. SBX_MAX_NDIM */
    int64_t shape[SBX_MAX_NDIM];   /* entries past ndim are 0 */
    void *data;                    /* numel * dtype size bytes; may be NULL when numel == 0 */
} sbx_array;

/* A new zero-filled array. *out is set only on success. Memory the library allocates (arrays, sparse
 * matrices and their data) is released only by the matching *_free function, never by free(). */
SBX_API sbx_status sbx_array_create(sbx_dtype dtype, int ndim, const int64_t *shape, sbx_array **out);
SBX_API void sbx_array_free(sbx_array *a);
SBX_API sbx_status sbx_array_copy(const sbx_array *a, sbx_array **out);
/* Number of elements (product of the shape). */
SBX_API int64_t sbx_array_numel(const sbx_array *a);
/* A copy with another dtype. Conversions to an integer type or bool fail (SBX_ERR_ARG, naming the
 * element) when a value is not exactly representable: no silent truncation, wrap-around or NaN.
 * Float-to-float and integer-to-float conversions round to nearest, as C does. Bool: nonzero is 1. */
SBX_API sbx_status sbx_array_cast(const sbx_array *a, sbx_dtype dtype, sbx_array **out);

/* What an operation answers for the gradient of its output with respect to one input (the Op
 * contract's grad and connection_pattern): a gradient exists; the output depends on the input but
 * has no gradient (Aesara's grad_undefined, e.g. a random draw and its parameters); the output does
 * not depend on the input (disconnected). The numbers are pinned like sbx_status. */
typedef enum sbx_grad { SBX_GRAD_DEFINED = 0, SBX_GRAD_UNDEFINED = 1, SBX_GRAD_DISCONNECTED = 2 } sbx_grad;

/* Threads used by the library's parallel loops (OpenMP). The default is the environment variable
 * SBX_NUM_THREADS when set to a positive integer, else OpenMP's default. n <= 0 restores the default.
 * Results never depend on the thread count. */
SBX_API void sbx_set_num_threads(int n);
SBX_API int sbx_get_num_threads(void);

#ifdef __cplusplus
}
#endif

#endif
