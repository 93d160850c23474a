/*
 * A main() for the fuzz targets of tools/fuzz/, so that every test run replays them without
 * libFuzzer (as OpenSSL's fuzz/test-corpus.c and libxml2's testFuzzer.c do): each file or folder
 * named on the command line is fed to LLVMFuzzerTestOneInput, then `-n N` pseudo-random inputs
 * derived from those files (byte flips, truncations, splices) with a fixed seed, so a failure
 * can be reproduced. Crashes, leaks and undefined behaviour are the sanitizers' to report; the
 * driver only says how many inputs ran.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target, as with libFuzzer. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

struct input {
    uint8_t *data;
    size_t len;
};

static struct input *inputs;
static size_t n_inputs;

static void add_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb)
                abort();
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    struct input *ni = realloc(inputs, (n_inputs + 1) * sizeof(*inputs));
    if (!ni)
        abort();
    inputs = ni;
    inputs[n_inputs].data = buf;
    inputs[n_inputs].len = len;
    n_inputs++;
}

static void add_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char child[4096];
        snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
        add_path(child);
    }
    closedir(d);
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(int argc, char **argv)
{
    long rounds = 1000;
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            rounds = strtol(argv[++i], NULL, 10);
        else
            add_path(argv[i]);
    }
    size_t ran = 0;
    for (size_t i = 0; i < n_inputs; i++, ran++)
        LLVMFuzzerTestOneInput(inputs[i].data, inputs[i].len);
    uint8_t *buf = malloc(65536);
    if (!buf)
        abort();
    for (long r = 0; r < rounds; r++, ran++) {
        size_t len = 0;
        if (n_inputs) {
            const struct input *a = &inputs[next_rand() % n_inputs];
            len = a->len < 65536 ? a->len : 65536;
            memcpy(buf, a->data, len);
            unsigned flips = (unsigned)(next_rand() % 8);
            for (unsigned k = 0; k < flips && len; k++)
                buf[next_rand() % len] = (uint8_t)next_rand();
            if (len && next_rand() % 4 == 0)
                len = (size_t)(next_rand() % len);
            if (next_rand() % 4 == 0) {
                const struct input *b = &inputs[next_rand() % n_inputs];
                size_t at = len ? (size_t)(next_rand() % len) : 0;
                size_t take = b->len < 65536 - at ? b->len : 65536 - at;
                memcpy(buf + at, b->data, take);
                len = at + take;
            }
        } else {
            len = (size_t)(next_rand() % 256);
            for (size_t k = 0; k < len; k++)
                buf[k] = (uint8_t)next_rand();
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    free(buf);
    for (size_t i = 0; i < n_inputs; i++)
        free(inputs[i].data);
    free(inputs);
    printf("replayed %zu inputs\n", ran);
    return 0;
}
