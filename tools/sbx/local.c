/* sbx local: sparse local connections (unshared weights; Theano's applySparseFilter). */
#include "cli.h"

#define SUB "local"

static const char usage[] =
    "usage: sbx local --images X.npy|X.png [--imgshp C,H,W] --kerns W.npy --kshp KH,KW --nkern N\n"
    "                 [--step DX,DY | --stride SY,SX] [--mode valid|full] [--bias B.npy] [--no-flatten]\n"
    "                 -o Y.npy|Y.png [--grad-out G.npy [--grad-images GX.npy] [--grad-kerns GW.npy]\n"
    "                 [--grad-bias GB.npy]]\n"
    "\n"
    "A locally connected layer: like convolve, but every output position has its own weights. The\n"
    "options are convolve's, a PNG image in and a picture of the feature maps out included (see\n"
    "'sbx convolve --help'), except:\n"
    "  --kerns  the original's weight vector of C*nkern*outsize*KH*KW values: weight\n"
    "           ((c*nkern + n)*outsize + o)*KH*KW + l joins tap l of position o in map c to output\n"
    "           unit n*outsize + o (the tap numbers of `sbx indices --no-ws`, minus one)\n"
    "  --bias   nkern*outsize values, one per output unit\n";

static int run(int argc, char **argv) { return cli_run_weighted(SUB, 1, argc, argv); }

const cli_command cli_local = {SUB, "sparse local connections (unshared weights), with gradients", usage, run};
