/*
 * A fake libnvidia-ml.so.1 for pytest-envguard's tests.
 *
 * Built with `cc -shared -fPIC` at test time (tests/fixtures_nvml.py) and
 * found by the real pynvml through LD_LIBRARY_PATH, so the probe, the checks
 * and the plugin run unchanged against a "driver" whose answers a test
 * chooses through environment variables, read at nvmlInit:
 *
 *   FAKE_NVML_DRIVER       driver version string          (default 535.104.05)
 *   FAKE_NVML_CUDA         CUDA driver version, NVML int  (default 12020)
 *   FAKE_NVML_GPUS         GPUs, ';'-separated; each is
 *                          name|uuid|total MiB|free MiB|major.minor|flags
 *                          flags: ','-separated of mig (MIG mode on),
 *                          prohibited (compute mode), noperm (no handle)
 *   FAKE_NVML_MIG          MIG devices, ';'-separated; each is
 *                          parent index|uuid|total MiB|gpu instance|compute instance
 *   FAKE_NVML_INIT_ERROR   nvmlInit returns this NVML error code (18: mismatch)
 *   FAKE_NVML_HANG         "init" or "devices": never return from nvmlInit /
 *                          nvmlDeviceGetCount (a wedged driver)
 *   FAKE_NVML_UNSUPPORTED  ','-separated function names that answer
 *                          NVML_ERROR_NOT_SUPPORTED
 *   FAKE_NVML_LOG          a file: one line "init" is appended per nvmlInit,
 *                          so a test can tell a cached answer from a fresh one
 *   FAKE_NVML_INIT_DELAY_MS  nvmlInit takes this long (a GPU without persistence
 *                          mode), so processes asking at once overlap
 *
 * Built with -DMACHINE_GPUS='"…"' (and MACHINE_DRIVER, MACHINE_CUDA) it plays one
 * fixed machine when those variables are unset: a "real" driver for rehearsing
 * the ENVGUARD_REAL_GPU=1 tests, whose environment drops every FAKE_NVML_* variable.
 *
 * Only the entry points the probe calls through pynvml exist; the values
 * follow NVML's header (nvml.h): error codes, buffer sizes, nvmlMemory_t.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NO_PERMISSION 4
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_LIB_RM_VERSION_MISMATCH 18
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 16
#define MAX_MIGS 32

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;

typedef struct device {
    char name[96];
    char uuid[96];
    unsigned long long total, free;
    int major, minor;
    int mig, prohibited, noperm;
    int is_mig, parent, gi, ci;
} device;

static device gpus[MAX_GPUS];
static device migs[MAX_MIGS];
static int gpu_count, mig_count, initialised;
#ifndef MACHINE_GPUS
#define MACHINE_GPUS ""
#endif
#ifndef MACHINE_DRIVER
#define MACHINE_DRIVER "535.104.05"
#endif
#ifndef MACHINE_CUDA
#define MACHINE_CUDA 12020
#endif

static char driver[80] = MACHINE_DRIVER;
static int cuda = MACHINE_CUDA;
static char unsupported[1024];

static void hang(void) {
    for (;;) pause();
}

static int is_unsupported(const char *function) {
    const char *at = strstr(unsupported, function);
    size_t length = strlen(function);
    while (at) {
        int starts = at == unsupported || at[-1] == ',';
        int ends = at[length] == '\0' || at[length] == ',';
        if (starts && ends) return 1;
        at = strstr(at + 1, function);
    }
    return 0;
}

/* Split `text` at `separator` in place; returns the number of fields. */
static int split(char *text, char separator, char **fields, int most) {
    int count = 0;
    fields[count++] = text;
    for (char *p = text; *p && count < most; p++) {
        if (*p == separator) {
            *p = '\0';
            fields[count++] = p + 1;
        }
    }
    return count;
}

static void copy(char *to, const char *from, size_t size) {
    snprintf(to, size, "%s", from);
}

static void read_gpus(void) {
    const char *spec = getenv("FAKE_NVML_GPUS");
    if (!spec) spec = MACHINE_GPUS;
    gpu_count = 0;
    if (!spec || !*spec) return;
    char *text = strdup(spec);
    char *entries[MAX_GPUS];
    int n = split(text, ';', entries, MAX_GPUS);
    for (int i = 0; i < n; i++) {
        char *f[6] = {0};
        if (!*entries[i]) continue;
        int k = split(entries[i], '|', f, 6);
        device *d = &gpus[gpu_count++];
        memset(d, 0, sizeof *d);
        copy(d->name, f[0], sizeof d->name);
        if (k > 1) copy(d->uuid, f[1], sizeof d->uuid);
        d->total = k > 2 ? strtoull(f[2], NULL, 10) << 20 : 0;
        d->free = k > 3 ? strtoull(f[3], NULL, 10) << 20 : d->total;
        if (k > 4) sscanf(f[4], "%d.%d", &d->major, &d->minor);
        if (k > 5) {
            d->mig = strstr(f[5], "mig") != NULL;
            d->prohibited = strstr(f[5], "prohibited") != NULL;
            d->noperm = strstr(f[5], "noperm") != NULL;
        }
    }
    free(text);
}

static void read_migs(void) {
    const char *spec = getenv("FAKE_NVML_MIG");
    mig_count = 0;
    if (!spec || !*spec) return;
    char *text = strdup(spec);
    char *entries[MAX_MIGS];
    int n = split(text, ';', entries, MAX_MIGS);
    for (int i = 0; i < n; i++) {
        char *f[5] = {0};
        if (!*entries[i]) continue;
        int k = split(entries[i], '|', f, 5);
        device *d = &migs[mig_count++];
        memset(d, 0, sizeof *d);
        d->is_mig = 1;
        d->parent = atoi(f[0]);
        if (k > 1) copy(d->uuid, f[1], sizeof d->uuid);
        d->total = k > 2 ? strtoull(f[2], NULL, 10) << 20 : 0;
        d->free = d->total;
        d->gi = k > 3 ? atoi(f[3]) : 0;
        d->ci = k > 4 ? atoi(f[4]) : 0;
        if (d->parent >= 0 && d->parent < gpu_count) {
            snprintf(d->name, sizeof d->name, "%s MIG", gpus[d->parent].name);
            d->major = gpus[d->parent].major;
            d->minor = gpus[d->parent].minor;
        }
    }
    free(text);
}

int nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    const char *log = getenv("FAKE_NVML_LOG");
    if (log && *log) {
        FILE *file = fopen(log, "a");
        if (file) {
            fputs("init\n", file);
            fclose(file);
        }
    }
    const char *delay = getenv("FAKE_NVML_INIT_DELAY_MS");
    if (delay && *delay) usleep((useconds_t)atoi(delay) * 1000);
    const char *how = getenv("FAKE_NVML_HANG");
    if (how && strcmp(how, "init") == 0) hang();
    const char *error = getenv("FAKE_NVML_INIT_ERROR");
    if (error && *error) return atoi(error);
    const char *value = getenv("FAKE_NVML_DRIVER");
    if (value) copy(driver, value, sizeof driver);
    value = getenv("FAKE_NVML_CUDA");
    if (value && *value) cuda = atoi(value);
    value = getenv("FAKE_NVML_UNSUPPORTED");
    copy(unsupported, value ? value : "", sizeof unsupported);
    read_gpus();
    read_migs();
    initialised++;
    return NVML_SUCCESS;
}

int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlInit(void) { return nvmlInitWithFlags(0); }

int nvmlShutdown(void) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    initialised--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(int result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH: return "Driver/library version mismatch";
    default: return "Unknown Error";
    }
}

#define GUARD(function)                                          \
    do {                                                         \
        if (!initialised) return NVML_ERROR_UNINITIALIZED;       \
        if (is_unsupported(function)) return NVML_ERROR_NOT_SUPPORTED; \
    } while (0)

static int put_string(char *buffer, unsigned int length, const char *value) {
    if (!buffer) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(buffer, value);
    return NVML_SUCCESS;
}

int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    GUARD("nvmlSystemGetDriverVersion");
    return put_string(version, length, driver);
}

int nvmlSystemGetCudaDriverVersion(int *version) {
    GUARD("nvmlSystemGetCudaDriverVersion");
    *version = cuda;
    return NVML_SUCCESS;
}

int nvmlSystemGetCudaDriverVersion_v2(int *version) {
    GUARD("nvmlSystemGetCudaDriverVersion_v2");
    *version = cuda;
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    GUARD("nvmlDeviceGetCount_v2");
    const char *how = getenv("FAKE_NVML_HANG");
    if (how && strcmp(how, "devices") == 0) hang();
    *count = (unsigned int)gpu_count;
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, device **handle) {
    GUARD("nvmlDeviceGetHandleByIndex_v2");
    if (index >= (unsigned int)gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    if (gpus[index].noperm) return NVML_ERROR_NO_PERMISSION;
    *handle = &gpus[index];
    return NVML_SUCCESS;
}

int nvmlDeviceGetName(device *handle, char *name, unsigned int length) {
    GUARD("nvmlDeviceGetName");
    return put_string(name, length, handle->name);
}

int nvmlDeviceGetUUID(device *handle, char *uuid, unsigned int length) {
    GUARD("nvmlDeviceGetUUID");
    return put_string(uuid, length, handle->uuid);
}

int nvmlDeviceGetMemoryInfo(device *handle, nvmlMemory_t *memory) {
    GUARD("nvmlDeviceGetMemoryInfo");
    memory->total = handle->total;
    memory->free = handle->free;
    memory->used = handle->total - handle->free;
    return NVML_SUCCESS;
}

int nvmlDeviceGetCudaComputeCapability(device *handle, int *major, int *minor) {
    GUARD("nvmlDeviceGetCudaComputeCapability");
    *major = handle->major;
    *minor = handle->minor;
    return NVML_SUCCESS;
}

int nvmlDeviceGetComputeMode(device *handle, int *mode) {
    GUARD("nvmlDeviceGetComputeMode");
    *mode = handle->prohibited ? 2 : 0; /* NVML_COMPUTEMODE_PROHIBITED : _DEFAULT */
    return NVML_SUCCESS;
}

int nvmlDeviceGetMigMode(device *handle, unsigned int *current, unsigned int *pending) {
    GUARD("nvmlDeviceGetMigMode");
    if (handle->is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *current = *pending = (unsigned int)handle->mig;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMaxMigDeviceCount(device *handle, unsigned int *count) {
    GUARD("nvmlDeviceGetMaxMigDeviceCount");
    *count = handle->mig ? 7 : 0;
    return NVML_SUCCESS;
}

int nvmlDeviceGetMigDeviceHandleByIndex(device *handle, unsigned int index, device **mig) {
    GUARD("nvmlDeviceGetMigDeviceHandleByIndex");
    int parent = (int)(handle - gpus);
    unsigned int seen = 0;
    for (int i = 0; i < mig_count; i++) {
        if (migs[i].parent != parent) continue;
        if (seen++ == index) {
            *mig = &migs[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

int nvmlDeviceGetGpuInstanceId(device *handle, unsigned int *id) {
    GUARD("nvmlDeviceGetGpuInstanceId");
    if (!handle->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned int)handle->gi;
    return NVML_SUCCESS;
}

int nvmlDeviceGetComputeInstanceId(device *handle, unsigned int *id) {
    GUARD("nvmlDeviceGetComputeInstanceId");
    if (!handle->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned int)handle->ci;
    return NVML_SUCCESS;
}
