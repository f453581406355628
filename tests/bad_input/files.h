/* Files for the bad-input rows, made at test time from a one-line spec, so that no damaged binary is
 * committed. Specs:
 *   bytes:TEXT             the bytes of TEXT, with C escapes (\n \t \r \\ \0 \xHH)
 *   npy:DESCR:SHAPE:N      a .npy 1.0 header {'descr': DESCR, 'fortran_order': False, 'shape': SHAPE}
 *                          then N body bytes; npy:{DICT}:N takes the header's dict text as it is
 *   png:W,H,COLOR,DEPTH    a PNG of zero samples (zlib stored blocks); :nodata leaves out the image
 *                          data, :rows=K gives the data of K rows only, :badcrc spoils IHDR's CRC
 *   idx:W1,W2,...:N        big-endian 32-bit words (an IDX header), then N bytes cycling 0-9
 * Any spec may end in @N: only its first N bytes are written (a file cut short). */
#ifndef BAD_INPUT_FILES_H
#define BAD_INPUT_FILES_H

#include <stddef.h>
#include <stdint.h>

/* Writes the file spec describes at path; 0 on success, else -1 with a reason in why. */
int bad_make_file(const char *spec, const char *path, char *why, size_t whysize);

#endif
