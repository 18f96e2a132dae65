// The course's flat-memory CPU backend (COURSE_API.md section 10.3) in C++: the pybind11
// module needle.backend_ndarray.ndarray_backend_cpu, a drop-in for the NumPy table in
// needle/backend_ndarray/ndarray_backend_xp.py (same function names and argument orders).
//
// Build (from the repository root; `pip install -e .` runs the same build when CMake and a
// C++ compiler are there):
//   cmake -S . -B build && cmake --build build -j2
//
// Layout of this file:
//   dtypes     the six supported dtypes, one dispatch() helper, scalar conversion rules
//   Array      an aligned flat buffer (size, dtype, ptr())
//   threads    a small pool with passive waiting; parallel_for() above a work threshold
//   copies     one strided-copy engine for compact / setitem / to_numpy / casts, with a
//              cache-blocked path for transposing copies
//   ewise      elementwise and scalar kernels, comparisons, vectorisable float32 exp/log/tanh
//   reduce     reductions over contiguous groups (NumPy's pairwise summation)
//   matmul     a packed, blocked GEMM (6 x 2-vector micro-kernel; 14 x 2 with AVX-512) over
//              row-major or 8x8-tiled operands (matmul and matmul_tiled), and a direct tile
//              kernel for small products
//   fused      im2col, col2im, leaky ReLU, Adam and BatchNorm over NumPy float32 arrays, for
//              cpu_numpy(), and over this module's Arrays, for cpu()
//
// No -march: the GEMM and float32 exp/log/tanh kernels exist for the baseline ISA and, on x86,
// for AVX2 + FMA, picked at run time (cpu_has_avx2); the GEMM also for AVX-512 (cpu_has_avx512,
// gemm_isa / set_gemm_isa / NEEDLE_GEMM_ISA choose among them).
//
// dtype rules (what NDArray relies on; NumPy's same_kind casting where they overlap):
// arithmetic computes in the output's dtype, and an operand of another dtype is cast to it
// first when its kind (bool < int < float) does not exceed the output's (x * bool_mask into a
// float32 out); a float operand or scalar with an integer output is a TypeError, as is
// true division, log, exp or tanh with an integer output. Comparisons compute in the
// operands' common dtype and write 0/1 in the output's dtype. fill / setitem / compact cast
// freely, like NumPy assignment.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#ifdef _WIN32
#include <process.h>
#define getpid _getpid
typedef int pid_t;
#else
#include <unistd.h>
#endif
#ifdef __linux__
#include <sched.h>
#endif

namespace py = pybind11;

#if defined(__GNUC__) || defined(__clang__)
#define NEEDLE_INLINE inline __attribute__((always_inline))
#define NEEDLE_VECTOR_EXTENSIONS 1
#else
#define NEEDLE_INLINE inline
#endif

// The hot kernels (GEMM, float32 exp/log/tanh) are compiled twice on x86 with GCC or Clang:
// for the baseline ISA (what -O3 targets without -march) and for AVX2 + FMA, and
// cpu_has_avx2() picks one at run time. Other targets get the baseline kernels only.
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(NEEDLE_NO_AVX2)
#define NEEDLE_X86_AVX2 1
#define NEEDLE_AVX2 __attribute__((target("avx2,fma")))
#include <immintrin.h>
// The GEMM also has an AVX-512 variant (64-byte vectors, 32 registers: its own micro-kernel
// shape), written with intrinsics, picked where the CPU has AVX-512 F/DQ/BW/VL.
#if !defined(NEEDLE_NO_AVX512)
#define NEEDLE_X86_AVX512 1
#define NEEDLE_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#include <immintrin.h>
#endif
#endif

namespace needle {
namespace cpu {

constexpr size_t kAlignment = 64;
constexpr int kTileSize = 8;

bool cpu_has_avx2() {
#ifdef NEEDLE_X86_AVX2
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#ifdef NEEDLE_X86_AVX512
  static const bool yes = [] {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return yes;
#else
  return false;
#endif
}

// An instruction-set variant of a kernel: vectors of Bytes bytes (16: SSE2/NEON, 32: AVX2).
template <int Bytes> struct Isa {
  static constexpr int bytes = Bytes;
};

// Defines a kernel once per variant: DEFINE(bytes, attributes).
#ifdef NEEDLE_X86_AVX2
#define NEEDLE_FOR_EACH_ISA(DEFINE) DEFINE(16, ) DEFINE(32, NEEDLE_AVX2)
#else
#define NEEDLE_FOR_EACH_ISA(DEFINE) DEFINE(16, )
#endif

// Below this many work units (about one per element copied or added) a loop stays on the
// calling thread: waking a sleeping worker costs tens of microseconds.
constexpr int64_t kParallelWork = int64_t(1) << 18;

// ---- dtypes ------------------------------------------------------------------------------------
enum class DType : uint8_t { Bool, UInt8, Int32, Int64, Float32, Float64 };
enum Kind : int { kBool = 0, kInt = 1, kFloat = 2 };

struct DTypeInfo {
  const char *name;
  size_t itemsize;
  Kind kind;
};
constexpr DTypeInfo kDTypes[] = {{"bool", 1, kBool},     {"uint8", 1, kInt},
                                 {"int32", 4, kInt},     {"int64", 8, kInt},
                                 {"float32", 4, kFloat}, {"float64", 8, kFloat}};
inline const DTypeInfo &info(DType d) { return kDTypes[static_cast<int>(d)]; }
inline Kind kind_of(DType d) { return info(d).kind; }

template <class T> struct Tag { using type = T; };
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::UInt8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::Int32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }

// The one dtype switch: calls f(Tag<T>{}) with the C++ type of `d`.
template <class F> void dispatch(DType d, F &&f) {
  switch (d) {
    case DType::Bool: f(Tag<bool>{}); return;
    case DType::UInt8: f(Tag<uint8_t>{}); return;
    case DType::Int32: f(Tag<int32_t>{}); return;
    case DType::Int64: f(Tag<int64_t>{}); return;
    case DType::Float32: f(Tag<float>{}); return;
    case DType::Float64: f(Tag<double>{}); return;
  }
}

// Floating-point dtypes only (matmul, division, transcendental functions).
template <class F> void dispatch_float(DType d, const char *fn, F &&f) {
  if (d == DType::Float32) return f(Tag<float>{});
  if (d == DType::Float64) return f(Tag<double>{});
  throw py::type_error(std::string(fn) + ": needs a float32 or float64 output, got " +
                       info(d).name);
}

DType parse_dtype(py::handle dtype) {
  std::string name;
  if (py::isinstance<py::str>(dtype)) {
    name = dtype.cast<std::string>();
  } else {  // np.float32, np.dtype("float64"), ...
    name = py::str(py::module_::import("numpy").attr("dtype")(dtype)).cast<std::string>();
  }
  for (int i = 0; i < 6; ++i)
    if (name == kDTypes[i].name) return static_cast<DType>(i);
  throw py::type_error("native cpu backend: unsupported dtype '" + name +
                       "' (supported: bool, uint8, int32, int64, float32, float64)");
}

// A Python scalar: bool, int (Python or NumPy integer) or float.
struct Scalar {
  Kind kind;
  int64_t i;
  double d;
};

Scalar to_scalar(py::handle h) {
  PyObject *o = h.ptr();
  if (PyBool_Check(o)) return {kBool, o == Py_True ? 1 : 0, o == Py_True ? 1.0 : 0.0};
  if (PyLong_Check(o) || (!PyFloat_Check(o) && PyIndex_Check(o))) {
    py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!index) throw py::error_already_set();
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (!overflow) return {kInt, static_cast<int64_t>(v), static_cast<double>(v)};
  }
  double d = PyFloat_AsDouble(o);
  if (d == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return {kFloat, 0, d};
}

const char *kind_name(Kind k) { return k == kBool ? "bool" : k == kInt ? "integer" : "float"; }

// NumPy's same_kind rule for operands meeting an output: bool < int < float.
void require_kind(Kind from, DType out, const char *fn, const char *what) {
  if (from > kind_of(out))
    throw py::type_error(std::string(fn) + ": cannot cast a " + kind_name(from) + " " + what +
                         " to the " + info(out).name + " output (NumPy's same_kind rule)");
}

// A scalar as T. Integer targets reject NaN and out-of-range floats (UB in C++).
template <class T> T scalar_as(const Scalar &s) {
  if (s.kind != kFloat) return static_cast<T>(s.i);
  if constexpr (std::is_integral<T>::value && !std::is_same<T, bool>::value) {
    const double lo = static_cast<double>(std::numeric_limits<T>::lowest()) - 1.0;
    const double hi = std::ldexp(1.0, std::numeric_limits<T>::digits);  // max + 1
    if (!(s.d > lo && s.d < hi))
      throw py::value_error("cannot convert float " + std::to_string(s.d) + " to " +
                            info(dtype_of<T>()).name);
  }
  return static_cast<T>(s.d);
}

// ---- Array -------------------------------------------------------------------------------------
void *aligned_malloc(size_t bytes) {
  bytes = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
#ifdef _WIN32
  void *p = _aligned_malloc(bytes, kAlignment);
#else
  void *p = nullptr;
  if (posix_memalign(&p, kAlignment, bytes) != 0) p = nullptr;
#endif
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void aligned_free(void *p) {
#ifdef _WIN32
  _aligned_free(p);
#else
  std::free(p);
#endif
}

struct AlignedDeleter {
  void operator()(void *p) const { aligned_free(p); }
};

// A buffer of n T's, aligned to kAlignment (scratch space: packing, casts).
template <class T> std::unique_ptr<T, AlignedDeleter> scratch(size_t n) {
  return std::unique_ptr<T, AlignedDeleter>(static_cast<T *>(aligned_malloc(n * sizeof(T))));
}

// A flat buffer of `size` elements of one dtype, aligned to kAlignment bytes.
struct Array {
  Array(size_t size, DType dtype) : size(size), dtype(dtype) {
    if (size > std::numeric_limits<size_t>::max() / 16) throw std::bad_alloc();
    ptr = aligned_malloc(size * info(dtype).itemsize);
  }
  ~Array() { aligned_free(ptr); }
  Array(const Array &) = delete;
  Array &operator=(const Array &) = delete;
  template <class T> T *data() const { return static_cast<T *>(ptr); }

  void *ptr;
  size_t size;
  DType dtype;
};

int64_t size_of(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Raise (rather than crash) when a view would reach outside its buffer.
void check_view(const Array &a, const std::vector<int64_t> &shape,
                const std::vector<int64_t> &strides, int64_t offset, const char *fn) {
  if (shape.size() != strides.size())
    throw py::value_error(std::string(fn) + ": shape and strides differ in length");
  int64_t lo = offset, hi = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw py::value_error(std::string(fn) + ": negative dimension");
    if (shape[i] == 0) return;  // an empty view touches nothing
    (strides[i] < 0 ? lo : hi) += (shape[i] - 1) * strides[i];
  }
  if (lo < 0 || hi >= static_cast<int64_t>(a.size))
    throw py::index_error(std::string(fn) + ": view (offset " + std::to_string(offset) +
                          ") reaches elements [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "] of a buffer of " + std::to_string(a.size));
}

void check_size(const Array &a, int64_t need, const char *fn, const char *what) {
  if (static_cast<int64_t>(a.size) < need)
    throw py::value_error(std::string(fn) + ": " + what + " holds " + std::to_string(a.size) +
                          " elements, needs " + std::to_string(need));
}

void check_same_size(const Array &a, const Array &out, const char *fn) {
  if (a.size != out.size)
    throw py::value_error(std::string(fn) + ": operand has " + std::to_string(a.size) +
                          " elements, out has " + std::to_string(out.size));
}

// ---- threads -----------------------------------------------------------------------------------
// A small pool of std::threads that sleep on a condition variable between jobs. The calling
// thread claims chunks too, and waits only for chunks a worker has already started, so a
// worker the OS does not schedule (a busy 2-core laptop) delays a call by at most one chunk.
// (libgomp's spin-waiting was measured at 8-12 ms per parallel region on such a machine.)
// Threads: NEEDLE_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may use.
int default_threads() {
  for (const char *name : {"NEEDLE_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const char *value = std::getenv(name);
    if (value != nullptr && std::atoi(value) > 0) return std::min(std::atoi(value), 256);
  }
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

thread_local bool in_pool_job = false;

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {}

  int threads() const { return threads_; }

  // f(chunk, slot) for chunk in [0, chunks); slot in [0, threads) names the executing thread.
  template <class F> void run(int64_t chunks, F &&f) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (chunks < 2 || threads_ < 2 || in_pool_job || !busy.owns_lock()) {
      for (int64_t c = 0; c < chunks; ++c) f(c, 0);
      return;
    }
    start_workers();
    std::function<void(int64_t, int)> job = [&f](int64_t c, int slot) { f(c, slot); };
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      chunks_ = chunks;
      next_.store(0, std::memory_order_relaxed);
      open_ = true;
      ++generation_;
    }
    cv_.notify_all();
    in_pool_job = true;
    for (int64_t c; (c = next_.fetch_add(1, std::memory_order_relaxed)) < chunks;) f(c, 0);
    in_pool_job = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = false;  // late risers see a closed job and go back to sleep
    }
    while (active_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

 private:
  void start_workers() {
    if (started_) return;
    started_ = true;
    for (int slot = 1; slot < threads_; ++slot) std::thread([this, slot] { work(slot); }).detach();
  }

  void work(int slot) {
    in_pool_job = true;
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (!open_) continue;
      active_.fetch_add(1, std::memory_order_relaxed);
      const std::function<void(int64_t, int)> *job = job_;
      const int64_t chunks = chunks_;
      lock.unlock();
      for (int64_t c; (c = next_.fetch_add(1, std::memory_order_relaxed)) < chunks;)
        (*job)(c, slot);
      active_.fetch_sub(1, std::memory_order_release);
    }
  }

  const int threads_;
  bool started_ = false;
  std::mutex busy_, mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  bool open_ = false;
  const std::function<void(int64_t, int)> *job_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> active_{0};
};

// Pools are never destroyed (their workers sleep through interpreter exit), one per thread
// count so set_num_threads can switch back and forth; a forked child, which has none of its
// parent's threads, starts afresh.
std::mutex pool_mu;
int pool_threads = 0;
pid_t pool_pid = 0;
std::vector<Pool *> pools;

Pool &pool() {
  std::lock_guard<std::mutex> lock(pool_mu);
  if (pool_pid != getpid()) {
    pools.clear();
    pool_pid = getpid();
    if (pool_threads == 0) pool_threads = default_threads();
  }
  for (Pool *p : pools)
    if (p->threads() == pool_threads) return *p;
  pools.push_back(new Pool(pool_threads));
  return *pools.back();
}

void set_num_threads(int threads) {
  if (threads < 1) throw py::value_error("set_num_threads: need at least 1 thread");
  pool();  // settle the pid and default first
  std::lock_guard<std::mutex> lock(pool_mu);
  pool_threads = std::min(threads, 256);
}

int num_threads() { return in_pool_job ? 1 : pool().threads(); }

// f(lo, hi) over [0, n) in chunks of at least kGrain work units (n * cost in all), on the
// pool when there is enough work.
constexpr int64_t kGrain = int64_t(1) << 15;
template <class F> void parallel_for(int64_t n, int64_t cost, F &&f) {
  if (n <= 0) return;
  const int64_t work = n * std::max<int64_t>(cost, 1);
  const int threads = work < kParallelWork ? 1 : num_threads();
  const int64_t chunks = std::min<int64_t>({n, work / kGrain, int64_t(threads) * 8});
  if (threads < 2 || chunks < 2) return f(int64_t(0), n);
  pool().run(chunks, [&](int64_t c, int) { f(n * c / chunks, n * (c + 1) / chunks); });
}

// ---- the strided-copy engine -------------------------------------------------------------------
// dst[i] = src[i] over one shape seen through two stride vectors (either may be 0 or negative).
// Size-1 axes are dropped and axes that are contiguous in both views merged, so the inner
// loop is as long as possible; outer axes advance like an odometer, one increment per row.
struct CopyPlan {
  std::vector<int64_t> shape, src, dst;
  int64_t size = 0;
};

CopyPlan plan_copy(const std::vector<int64_t> &shape, const std::vector<int64_t> &src,
                   const std::vector<int64_t> &dst) {
  CopyPlan p;
  p.size = size_of(shape);
  if (p.size == 0) return p;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {  // innermost first
    if (shape[i] == 1) continue;
    if (!p.shape.empty() && src[i] == p.src.back() * p.shape.back() &&
        dst[i] == p.dst.back() * p.shape.back()) {
      p.shape.back() *= shape[i];
      continue;
    }
    p.shape.push_back(shape[i]);
    p.src.push_back(src[i]);
    p.dst.push_back(dst[i]);
  }
  if (p.shape.empty()) p.shape = {1}, p.src = {0}, p.dst = {0};
  std::reverse(p.shape.begin(), p.shape.end());
  std::reverse(p.src.begin(), p.src.end());
  std::reverse(p.dst.begin(), p.dst.end());
  return p;
}

std::vector<int64_t> compact_strides(const std::vector<int64_t> &shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

template <class S, class D>
NEEDLE_INLINE void copy_row(const S *src, int64_t ss, D *dst, int64_t ds, int64_t n) {
  if (ss == 1 && ds == 1) {
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<D>(src[j]);
  } else if (ss == 0) {
    const D v = static_cast<D>(*src);
    if (ds == 1)
      for (int64_t j = 0; j < n; ++j) dst[j] = v;
    else
      for (int64_t j = 0; j < n; ++j) dst[j * ds] = v;
  } else if (ds == 1) {
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<D>(src[j * ss]);
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j * ds] = static_cast<D>(src[j * ss]);
  }
}

// Walks the outer axes [0, n) of a plan like an odometer, tracking both offsets.
struct Odometer {
  Odometer(const CopyPlan &p, int n, int64_t row) : p(p), n(n), index(n) {
    for (int d = n - 1; d >= 0; --d) {
      index[d] = row % p.shape[d];
      row /= p.shape[d];
      src += index[d] * p.src[d];
      dst += index[d] * p.dst[d];
    }
  }
  void next() {
    for (int d = n - 1; d >= 0; --d) {
      src += p.src[d];
      dst += p.dst[d];
      if (++index[d] < p.shape[d]) return;
      src -= p.src[d] * p.shape[d];
      dst -= p.dst[d] * p.shape[d];
      index[d] = 0;
    }
  }
  const CopyPlan &p;
  const int n;
  std::vector<int64_t> index;
  int64_t src = 0, dst = 0;
};

// A transpose-like copy (one side contiguous along the inner axis, the other along axis d)
// reads or writes a whole cache line per element. Moving d next to the inner axis and
// copying the pair in kBlock x kBlock blocks keeps both sides in L1. 8 rather than 16 or 32:
// with power-of-two strides every row of a block maps to the same L1 set (measured: a
// 1024 x 1024 transpose at 1.1 ns per element with 8, 3.5 with 16, 3-4.5 with 32).
constexpr int64_t kBlock = 8;

bool plan_blocks(CopyPlan &p) {
  const int last = static_cast<int>(p.shape.size()) - 1;
  auto unit = [](int64_t s) { return s == 1 || s == -1; };
  if (last < 1 || p.shape[last] < 8 || p.src[last] == 0 || p.dst[last] == 0 ||
      unit(p.src[last]) == unit(p.dst[last]))
    return false;
  const std::vector<int64_t> &other = unit(p.src[last]) ? p.dst : p.src;
  for (int d = last - 1; d >= 0; --d) {
    if (!unit(other[d]) || p.shape[d] < 8) continue;
    for (auto *v : {&p.shape, &p.src, &p.dst})
      std::rotate(v->begin() + d, v->begin() + d + 1, v->begin() + last);
    return true;
  }
  return false;
}

// An 8 x 8 block of 4-byte elements transposed in eight AVX2 registers: out row c (at
// out + c * out_ld) = column c of the 8 rows at in + r * in_ld. (The scalar block loop moved
// 4 GB/s on the DCGAN's NHWC <-> NCHW copies: one element per load and per store.)
#ifdef NEEDLE_X86_AVX2
// Edge blocks: `rows` x `cols` (each <= 8) through the same registers, with masked loads
// and stores (the DCGAN's 14-wide rows leave a 6-wide edge on every block row).
NEEDLE_AVX2 NEEDLE_INLINE __m256i first_lanes_avx2(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
template <bool Full>
NEEDLE_AVX2 NEEDLE_INLINE void transpose_block_4byte(const float *a, int64_t in_ld, float *b,
                                                     int64_t out_ld, int rows, int cols) {
  __m256 r[8], t[8];
  const __m256i load_mask = first_lanes_avx2(cols), store_mask = first_lanes_avx2(rows);
  for (int q = 0; q < 8; ++q)
    r[q] = Full ? _mm256_loadu_ps(a + q * in_ld)
                : q < rows ? _mm256_maskload_ps(a + q * in_ld, load_mask) : _mm256_setzero_ps();
  for (int q = 0; q < 4; ++q) {
    t[2 * q] = _mm256_unpacklo_ps(r[2 * q], r[2 * q + 1]);
    t[2 * q + 1] = _mm256_unpackhi_ps(r[2 * q], r[2 * q + 1]);
  }
  for (int g = 0; g < 2; ++g) {  // rows 4g..4g+3: columns (0,1,4,5) in t[4g], (2,3,6,7) in t[4g+1]
    const __m256 lo = t[4 * g], hi = t[4 * g + 1], lo2 = t[4 * g + 2], hi2 = t[4 * g + 3];
    r[4 * g] = _mm256_shuffle_ps(lo, lo2, 0x44);      // column 0 (lanes 0-3), 4 (lanes 4-7)
    r[4 * g + 1] = _mm256_shuffle_ps(lo, lo2, 0xEE);  // columns 1, 5
    r[4 * g + 2] = _mm256_shuffle_ps(hi, hi2, 0x44);  // columns 2, 6
    r[4 * g + 3] = _mm256_shuffle_ps(hi, hi2, 0xEE);  // columns 3, 7
  }
  for (int c = 0; c < 8; ++c) {
    const __m256 column = _mm256_permute2f128_ps(r[c & 3], r[4 + (c & 3)], c < 4 ? 0x20 : 0x31);
    if (Full)
      _mm256_storeu_ps(b + c * out_ld, column);
    else if (c < cols)
      _mm256_maskstore_ps(b + c * out_ld, store_mask, column);
  }
}
NEEDLE_AVX2 void transpose8x8_4byte(const void *in, int64_t in_ld, void *out, int64_t out_ld) {
  transpose_block_4byte<true>(static_cast<const float *>(in), in_ld, static_cast<float *>(out),
                              out_ld, 8, 8);
}
NEEDLE_AVX2 void transpose_edge_4byte(const void *in, int64_t in_ld, void *out, int64_t out_ld,
                                      int rows, int cols) {
  transpose_block_4byte<false>(static_cast<const float *>(in), in_ld, static_cast<float *>(out),
                               out_ld, rows, cols);
}
#endif

template <class S, class D> void strided_copy(const S *src, D *dst, CopyPlan p) {
  if (p.size == 0) return;
  if (plan_blocks(p)) {
    const int n = static_cast<int>(p.shape.size()) - 2;  // the block axes are n and n + 1
    const int64_t rows = p.shape[n], cols = p.shape[n + 1];
    const int64_t sr = p.src[n], sc = p.src[n + 1], dr = p.dst[n], dc = p.dst[n + 1];
    const int64_t bands = (rows + kBlock - 1) / kBlock;  // units: (outer index, band of rows)
    // Same 4-byte type on both sides, unit strides +1 (not a flip): whole blocks in registers.
    const bool vector_blocks = std::is_same<S, D>::value && sizeof(S) == 4 && cpu_has_avx2() &&
                               ((sc == 1 && dr == 1) || (dc == 1 && sr == 1));
    (void)vector_blocks;
    parallel_for(p.size / (rows * cols) * bands, kBlock * cols, [&](int64_t u0, int64_t u1) {
      Odometer at(p, n, u0 / bands);
      int64_t band = u0 % bands;
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r0 = band * kBlock, r1 = std::min(rows, r0 + kBlock);
        for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
          const int64_t c1 = std::min(cols, c0 + kBlock);
#ifdef NEEDLE_X86_AVX2
          if (vector_blocks) {
            const int nr = static_cast<int>(r1 - r0), nc = static_cast<int>(c1 - c0);
            if (sc == 1) {  // source rows contiguous, destination columns
              const S *in = src + at.src + r0 * sr + c0;
              D *out = dst + at.dst + r0 + c0 * dc;
              if (nr == kBlock && nc == kBlock) transpose8x8_4byte(in, sr, out, dc);
              else transpose_edge_4byte(in, sr, out, dc, nr, nc);
            } else {  // source columns contiguous, destination rows
              const S *in = src + at.src + r0 + c0 * sc;
              D *out = dst + at.dst + r0 * dr + c0;
              if (nr == kBlock && nc == kBlock) transpose8x8_4byte(in, sc, out, dr);
              else transpose_edge_4byte(in, sc, out, dr, nc, nr);
            }
            continue;
          }
#endif
          for (int64_t r = r0; r < r1; ++r) {
            const S *s = src + at.src + r * sr;
            D *d = dst + at.dst + r * dr;
            for (int64_t c = c0; c < c1; ++c) d[c * dc] = static_cast<D>(s[c * sc]);
          }
        }
        if (++band == bands) band = 0, at.next();
      }
    });
    return;
  }
  const int outer = static_cast<int>(p.shape.size()) - 1;
  const int64_t inner = p.shape[outer], ss = p.src[outer], ds = p.dst[outer];
  parallel_for(p.size / inner, inner, [&](int64_t row0, int64_t row1) {
    Odometer at(p, outer, row0);
    for (int64_t row = row0; row < row1; ++row, at.next())
      copy_row(src + at.src, ss, dst + at.dst, ds, inner);
  });
}

// The data of `a` as T: itself, or a cast copy in `tmp` (kind-checked for arithmetic).
template <class T>
const T *as_type(const Array &a, std::unique_ptr<Array> &tmp, const char *fn, bool check) {
  constexpr DType target = dtype_of<T>();
  if (a.dtype == target) return a.data<T>();
  if (check) require_kind(kind_of(a.dtype), target, fn, "operand");
  tmp.reset(new Array(a.size, target));
  const int64_t n = static_cast<int64_t>(a.size);
  dispatch(a.dtype, [&](auto tag) {
    using S = typename decltype(tag)::type;
    strided_copy(a.data<S>(), tmp->data<T>(), plan_copy({n}, {1}, {1}));
  });
  return tmp->data<T>();
}

void compact(const Array &a, Array &out, const std::vector<int64_t> &shape,
             const std::vector<int64_t> &strides, int64_t offset) {
  check_view(a, shape, strides, offset, "compact");
  check_size(out, size_of(shape), "compact", "out");
  const CopyPlan plan = plan_copy(shape, strides, compact_strides(shape));
  dispatch(a.dtype, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    dispatch(out.dtype, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      strided_copy(a.data<S>() + offset, out.data<D>(), plan);
    });
  });
}

void ewise_setitem(const Array &a, Array &out, const std::vector<int64_t> &shape,
                   const std::vector<int64_t> &strides, int64_t offset) {
  check_view(out, shape, strides, offset, "ewise_setitem");
  check_size(a, size_of(shape), "ewise_setitem", "a");
  const CopyPlan plan = plan_copy(shape, compact_strides(shape), strides);
  dispatch(a.dtype, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    dispatch(out.dtype, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      strided_copy(a.data<S>(), out.data<D>() + offset, plan);
    });
  });
}

void scalar_setitem(int64_t /*size*/, py::handle val, Array &out,
                    const std::vector<int64_t> &shape, const std::vector<int64_t> &strides,
                    int64_t offset) {
  check_view(out, shape, strides, offset, "scalar_setitem");
  const Scalar s = to_scalar(val);
  const CopyPlan plan = plan_copy(shape, std::vector<int64_t>(shape.size(), 0), strides);
  dispatch(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T value = scalar_as<T>(s);
    strided_copy(&value, out.data<T>() + offset, plan);
  });
}

void fill(Array &out, py::handle val) {
  const Scalar s = to_scalar(val);
  dispatch(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T value = scalar_as<T>(s);
    T *o = out.data<T>();
    parallel_for(static_cast<int64_t>(out.size), 1, [&](int64_t lo, int64_t hi) {
      std::fill(o + lo, o + hi, value);
    });
  });
}

py::array to_numpy(const Array &a, const std::vector<int64_t> &shape,
                   const std::vector<int64_t> &strides, int64_t offset) {
  check_view(a, shape, strides, offset, "to_numpy");
  py::array result;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    result = py::array(py::dtype::of<T>(), std::vector<py::ssize_t>(shape.begin(), shape.end()));
    strided_copy(a.data<T>() + offset, static_cast<T *>(result.mutable_data()),
                 plan_copy(shape, strides, compact_strides(shape)));
  });
  return result;
}

void from_numpy(py::handle source, Array &out) {
  dispatch(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Host = py::array_t<T, py::array::c_style | py::array::forcecast>;
    Host host = Host::ensure(source);  // a no-op for a C-contiguous array of T
    if (!host) throw py::error_already_set();
    const int64_t n = host.size();
    if (n == 1 && out.size != 1) {  // NumPy's assignment broadcasts a single element
      std::fill(out.data<T>(), out.data<T>() + out.size, *host.data());
      return;
    }
    if (n != static_cast<int64_t>(out.size))
      throw py::value_error("from_numpy: array of " + std::to_string(n) +
                            " elements into a buffer of " + std::to_string(out.size));
    if (n > 0) std::memcpy(out.data<T>(), host.data(), n * sizeof(T));
  });
}

// ---- elementwise -------------------------------------------------------------------------------
// Integer arithmetic wraps like NumPy's (through the unsigned type: signed overflow is UB).
template <class T> using Wide =
    typename std::conditional<std::is_integral<T>::value && !std::is_same<T, bool>::value,
                              std::make_unsigned<T>, std::common_type<T>>::type::type;

struct AddOp {
  template <class T> T operator()(T a, T b) const { return T(Wide<T>(a) + Wide<T>(b)); }
};
struct MulOp {
  template <class T> T operator()(T a, T b) const { return T(Wide<T>(a) * Wide<T>(b)); }
};
struct DivOp {
  template <class T> T operator()(T a, T b) const { return a / b; }
};
struct PowOp {  // C's pow, as np.power: pow(x, 0) = 1, (-2)^3 = -8, (-2)^0.5 = NaN
  template <class T> T operator()(T a, T b) const { return std::pow(a, b); }
};
struct MaxOp {  // NaN-propagating, like np.maximum
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point<T>::value) return (a > b || a != a) ? a : b;
    else return a > b ? a : b;
  }
};
// Comparisons give T(1) or T(0) in the compute type: a select vectorises where a
// bool-to-float conversion does not.
struct EqOp {
  template <class T> T operator()(T a, T b) const { return a == b ? T(1) : T(0); }
};
struct GeOp {
  template <class T> T operator()(T a, T b) const { return a >= b ? T(1) : T(0); }
};

template <class T, class U, class Op>
void map_binary(const T *a, const T *b, U *out, int64_t n, Op op) {
  parallel_for(n, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = static_cast<U>(op(a[i], b[i]));
  });
}

template <class T, class U, class Op>
void map_scalar(const T *a, T b, U *out, int64_t n, Op op) {
  parallel_for(n, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) out[i] = static_cast<U>(op(a[i], b));
  });
}

template <class Op, bool FloatOnly>
void ewise_arith(const Array &a, const Array &b, Array &out, const char *fn) {
  check_same_size(a, out, fn);
  check_same_size(b, out, fn);
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta, tb;
    const T *pa = as_type<T>(a, ta, fn, true), *pb = as_type<T>(b, tb, fn, true);
    map_binary(pa, pb, out.data<T>(), static_cast<int64_t>(out.size), Op());
  };
  if constexpr (FloatOnly)
    dispatch_float(out.dtype, fn, run);
  else
    dispatch(out.dtype, run);
}

template <class Op, bool FloatOnly>
void scalar_arith(const Array &a, py::handle val, Array &out, const char *fn) {
  check_same_size(a, out, fn);
  const Scalar s = to_scalar(val);
  require_kind(s.kind, out.dtype, fn, "scalar");
  auto run = [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta;
    map_scalar(as_type<T>(a, ta, fn, true), scalar_as<T>(s), out.data<T>(),
               static_cast<int64_t>(out.size), Op());
  };
  if constexpr (FloatOnly)
    dispatch_float(out.dtype, fn, run);
  else
    dispatch(out.dtype, run);
}

// The dtype two operands are compared in (NumPy's promotion, restricted to our dtypes).
DType common_dtype(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::Bool) return b;
  if (b == DType::Bool) return a;
  const Kind ka = kind_of(a), kb = kind_of(b);
  if (ka == kInt && kb == kInt) return DType::Int64;
  if (ka == kFloat && kb == kFloat) return DType::Float64;
  const DType f = ka == kFloat ? a : b, i = ka == kFloat ? b : a;
  return (f == DType::Float32 && i == DType::UInt8) ? DType::Float32 : DType::Float64;
}

template <class Op>
void ewise_compare(const Array &a, const Array &b, Array &out, const char *fn) {
  check_same_size(a, out, fn);
  check_same_size(b, out, fn);
  dispatch(common_dtype(a.dtype, b.dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta, tb;
    const T *pa = as_type<T>(a, ta, fn, false), *pb = as_type<T>(b, tb, fn, false);
    dispatch(out.dtype, [&](auto out_tag) {
      using U = typename decltype(out_tag)::type;
      map_binary(pa, pb, out.data<U>(), static_cast<int64_t>(out.size), Op());
    });
  });
}

template <class Op>
void scalar_compare(const Array &a, py::handle val, Array &out, const char *fn) {
  check_same_size(a, out, fn);
  const Scalar s = to_scalar(val);
  // A weak Python scalar takes the array's dtype unless its kind is higher (NEP 50).
  DType compute = a.dtype;
  if (s.kind > kind_of(a.dtype)) compute = s.kind == kFloat ? DType::Float64 : DType::Int64;
  dispatch(compute, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta;
    const T *pa = as_type<T>(a, ta, fn, false);
    const T value = scalar_as<T>(s);
    dispatch(out.dtype, [&](auto out_tag) {
      using U = typename decltype(out_tag)::type;
      map_scalar(pa, value, out.data<U>(), static_cast<int64_t>(out.size), Op());
    });
  });
}

// ---- float32 exp / log / tanh, written so the compiler vectorises them -------------------------
// Cephes' single-precision polynomials (<= 2 ulp), branch-free: selects instead of branches.
template <class To, class From> NEEDLE_INLINE To bit_cast(From x) {
  To y;
  std::memcpy(&y, &x, sizeof y);
  return y;
}

NEEDLE_INLINE float exp_f32(float x) {
  const float hi = 88.72283935546875f, lo = -103.97208404541015625f;
  const float xc = x != x ? 0.0f : (x > hi ? hi : (x < lo ? lo : x));
  // n = round(x / ln 2), by the add-and-subtract-2^23 trick (no SSE4.1 rounding needed).
  const float shifter = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  // 2^n in two halves, so results down to the subnormal range stay exact.
  const int32_t k = static_cast<int32_t>(n), k1 = k / 2, k2 = k - k1;
  const float result = y * bit_cast<float>((k1 + 127) << 23) * bit_cast<float>((k2 + 127) << 23);
  return x != x ? x : (x > hi ? std::numeric_limits<float>::infinity()
                              : (x < lo ? 0.0f : result));
}

NEEDLE_INLINE float log_f32(float x) {
  const bool subnormal = x < 1.17549435e-38f;
  const float xs = subnormal ? x * 8388608.0f : x;  // 2^23
  const int32_t bits = bit_cast<int32_t>(xs);
  float e = static_cast<float>((bits >> 23) - 126) - (subnormal ? 23.0f : 0.0f);
  float m = bit_cast<float>((bits & 0x007fffff) | 0x3f000000);  // in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1.0f : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  const float result = (m + y) + e * 0.693359375f;
  const float inf = std::numeric_limits<float>::infinity();
  return x > 0.0f ? (x == inf ? inf : result)
                  : (x == 0.0f ? -inf : std::numeric_limits<float>::quiet_NaN());
}

NEEDLE_INLINE float tanh_f32(float x) {
  const float ax = x < 0.0f ? -x : x;
  // |x| < 0.625: odd polynomial; else 1 - 2 / (exp(2|x|) + 1) with the sign of x.
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = 1.0f - 2.0f / (exp_f32(ax + ax) + 1.0f);
  return ax < 0.625f || x != x ? (x == 0.0f ? x : small) : (x < 0.0f ? -big : big);
}

#define NEEDLE_UNARY_CHUNKS(BYTES, ATTR)                                     \
  ATTR void exp_chunk(Isa<BYTES>, const float *a, float *out, int64_t n) {   \
    for (int64_t i = 0; i < n; ++i) out[i] = exp_f32(a[i]);                  \
  }                                                                          \
  ATTR void log_chunk(Isa<BYTES>, const float *a, float *out, int64_t n) {   \
    for (int64_t i = 0; i < n; ++i) out[i] = log_f32(a[i]);                  \
  }                                                                          \
  ATTR void tanh_chunk(Isa<BYTES>, const float *a, float *out, int64_t n) {  \
    for (int64_t i = 0; i < n; ++i) out[i] = tanh_f32(a[i]);                 \
  }
NEEDLE_FOR_EACH_ISA(NEEDLE_UNARY_CHUNKS)
#undef NEEDLE_UNARY_CHUNKS

template <class Isa>
void unary_chunk(Isa isa, int f, const float *a, float *out, int64_t n) {
  if (f == 0) exp_chunk(isa, a, out, n);
  if (f == 1) log_chunk(isa, a, out, n);
  if (f == 2) tanh_chunk(isa, a, out, n);
}

enum class Unary { Exp = 0, Log = 1, Tanh = 2 };

void ewise_unary(const Array &a, Array &out, Unary f, const char *fn) {
  check_same_size(a, out, fn);
  dispatch_float(out.dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta;
    const T *pa = as_type<T>(a, ta, fn, true);
    T *po = out.data<T>();
    parallel_for(static_cast<int64_t>(out.size), 16, [&](int64_t lo, int64_t hi) {
      if constexpr (std::is_same<T, float>::value) {
#ifdef NEEDLE_X86_AVX2
        if (cpu_has_avx2())
          return unary_chunk(Isa<32>{}, static_cast<int>(f), pa + lo, po + lo, hi - lo);
#endif
        unary_chunk(Isa<16>{}, static_cast<int>(f), pa + lo, po + lo, hi - lo);
      } else {
        for (int64_t i = lo; i < hi; ++i)
          po[i] = f == Unary::Exp ? std::exp(pa[i]) : f == Unary::Log ? std::log(pa[i])
                                                                     : std::tanh(pa[i]);
      }
    });
  });
}

template <class T> T integer_power(T x, int64_t k) {
  Wide<T> result = 1, base = static_cast<Wide<T>>(x);
  for (; k > 0; k >>= 1, base = static_cast<Wide<T>>(base * base))
    if (k & 1) result = static_cast<Wide<T>>(result * base);
  return static_cast<T>(result);
}

void scalar_power(const Array &a, py::handle val, Array &out) {
  const char *fn = "scalar_power";
  check_same_size(a, out, fn);
  const Scalar s = to_scalar(val);
  require_kind(s.kind, out.dtype, fn, "exponent");
  dispatch(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta;
    const T *x = as_type<T>(a, ta, fn, true);
    T *y = out.data<T>();
    const int64_t n = static_cast<int64_t>(out.size);
    auto each = [&](auto f) {
      parallel_for(n, 8, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) y[i] = f(x[i]);
      });
    };
    if constexpr (std::is_floating_point<T>::value) {
      const T e = scalar_as<T>(s);
      // NumPy's fast exponents; the rest through pow.
      if (e == T(2)) each([](T v) { return v * v; });
      else if (e == T(1)) each([](T v) { return v; });
      else if (e == T(0)) each([](T) { return T(1); });
      else if (e == T(-1)) each([](T v) { return T(1) / v; });
      else if (e == T(0.5)) each([](T v) { return static_cast<T>(std::sqrt(v)); });
      else each([e](T v) { return static_cast<T>(std::pow(v, e)); });
    } else {
      if (s.i < 0)
        throw py::value_error("scalar_power: integers to negative integer powers are not "
                              "allowed");
      const int64_t k = s.i;
      each([k](T v) { return integer_power(v, k); });
    }
  });
}

// ---- reductions over contiguous groups ---------------------------------------------------------
// NumPy's pairwise summation: 8 running sums over blocks of 128, halves above that.
template <class T> T pairwise_sum(const T *a, int64_t n) {
  AddOp add;
  if (n < 8) {
    T s = T(0);
    for (int64_t i = 0; i < n; ++i) s = add(s, a[i]);
    return s;
  }
  if (n <= 128) {
    T r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) r[j] = add(r[j], a[i + j]);
    T s = add(add(add(r[0], r[1]), add(r[2], r[3])), add(add(r[4], r[5]), add(r[6], r[7])));
    for (; i < n; ++i) s = add(s, a[i]);
    return s;
  }
  int64_t half = n / 2;
  half -= half % 8;
  return add(pairwise_sum(a, half), pairwise_sum(a + half, n - half));
}

template <class T> T group_max(const T *a, int64_t n) {
  MaxOp max;
  if (n < 8) {
    T m = a[0];
    for (int64_t i = 1; i < n; ++i) m = max(m, a[i]);
    return m;
  }
  T r[8];
  for (int j = 0; j < 8; ++j) r[j] = a[j];
  int64_t i = 8;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) r[j] = max(r[j], a[i + j]);
  T m = r[0];
  for (int j = 1; j < 8; ++j) m = max(m, r[j]);
  for (; i < n; ++i) m = max(m, a[i]);
  return m;
}

template <bool IsMax>
void reduce(const Array &a, Array &out, int64_t reduce_size, const char *fn) {
  if (reduce_size < 0) throw py::value_error(std::string(fn) + ": negative reduce_size");
  const int64_t groups = static_cast<int64_t>(out.size);
  check_size(a, groups * reduce_size, fn, "a");
  if (IsMax && reduce_size == 0 && groups > 0)
    throw py::value_error("reduce_max: zero-size groups have no maximum");
  dispatch(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta;
    const T *x = as_type<T>(a, ta, fn, true);
    T *y = out.data<T>();
    parallel_for(groups, reduce_size + 1, [&](int64_t lo, int64_t hi) {
      for (int64_t g = lo; g < hi; ++g)
        y[g] = IsMax ? group_max(x + g * reduce_size, reduce_size)
                     : pairwise_sum(x + g * reduce_size, reduce_size);
    });
  });
}

// ---- matmul ------------------------------------------------------------------------------------
// (GCC 12's AVX-512 headers trip -Wmaybe-uninitialized: _mm512_undefined_*, GCC bug 105593.)
#if defined(NEEDLE_X86_AVX512) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// A vector of Bytes bytes of T: one register of the variant's ISA (Isa<Bytes>).
#ifdef NEEDLE_VECTOR_EXTENSIONS
template <class T, int Bytes> struct Simd;
template <> struct Simd<float, 16> { typedef float V __attribute__((vector_size(16))); };
template <> struct Simd<float, 32> { typedef float V __attribute__((vector_size(32))); };
template <> struct Simd<double, 16> { typedef double V __attribute__((vector_size(16))); };
template <> struct Simd<double, 32> { typedef double V __attribute__((vector_size(32))); };
#else
template <class T, int Bytes> struct Simd {
  struct V {
    T x[Bytes / sizeof(T)];
    V &operator+=(const V &o) {
      for (size_t i = 0; i < Bytes / sizeof(T); ++i) x[i] += o.x[i];
      return *this;
    }
    friend V operator+(V a, const V &b) { return a += b; }
    friend V operator*(T s, const V &b) {
      V r;
      for (size_t i = 0; i < Bytes / sizeof(T); ++i) r.x[i] = s * b.x[i];
      return r;
    }
  };
};
#endif
template <class T, int Bytes> constexpr int lanes() { return Bytes / static_cast<int>(sizeof(T)); }
template <class T, int Bytes> NEEDLE_INLINE typename Simd<T, Bytes>::V vload(const T *p) {
  typename Simd<T, Bytes>::V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T, int Bytes, class V> NEEDLE_INLINE void vstore(T *p, const V &v) {
  std::memcpy(p, &v, sizeof v);
}

// An operand's layout: row-major with row stride ld, or the course's tiled layout of 8x8
// row-major tiles, (rows/8, cols/8, 8, 8) with ld = cols / 8. In both, L <= 8 consecutive
// columns starting at a multiple of L are contiguous (what a vector load or store needs).
template <class P, bool Tiled> struct View {
  P p;
  int64_t ld;
  NEEDLE_INLINE P at(int64_t i, int64_t j) const {
    static_assert(kTileSize == 8, "the tiled view assumes 8x8 tiles");
    if constexpr (Tiled)
      return p + ((((i >> 3) * ld + (j >> 3)) << 6) | ((i & 7) << 3) | (j & 7));
    else
      return p + i * ld + j;
  }
};

// A transposed operand: element (i, j) at p[j * ld + i] (the transpose of a row-major matrix
// with row stride ld), what matmul_strided hands the packing instead of a compacted copy.
template <class P> struct TView {
  P p;
  int64_t ld;
  NEEDLE_INLINE P at(int64_t i, int64_t j) const { return p + j * ld + i; }
};

// Blocking (BLIS-style), per variant: an MR x NR register tile of C (NR = two vectors), A
// packed in MR-row strips (MC x KC, sized for L2), B packed in NR-column strips (KC x NR each,
// sized for L1). SSE2/AVX2 (16 registers): 6 x 2 vectors. AVX-512 (32 registers): 14 x 2
// vectors, 28 accumulators (14 x 32 floats, 14 x 16 doubles); 14 rows divide the DCGAN's
// 3136- and 12544-row products exactly, and 32 columns its 128 to 2048.
constexpr int kMR = 6;
template <class T, int Bytes> struct Blocking {
  static constexpr int MR = kMR, NR = 2 * lanes<T, Bytes>();
  static constexpr int64_t KC = 256, MC = 96, NC = 3072;
};
template <class T> struct Blocking<T, 64> {
  static constexpr int MR = 14, NR = 2 * lanes<T, 64>();
  static constexpr int64_t KC = 256, MC = 336, NC = 3072;
};
template <class T, int Bytes> constexpr int kNR() { return Blocking<T, Bytes>::NR; }

// C[0:mr, 0:nr] (+)= A_strip (kc x MR, k-major) @ B_strip (kc x NR, k-major).
template <class T, int Bytes, class CView>
NEEDLE_INLINE void micro_kernel(int64_t kc, const T *A, const T *B, const CView &C, int64_t i0,
                                int64_t j0, int mr, int nr, bool accumulate) {
  using V = typename Simd<T, Bytes>::V;
  constexpr int L = lanes<T, Bytes>(), NR = kNR<T, Bytes>();
  V c00{}, c01{}, c10{}, c11{}, c20{}, c21{}, c30{}, c31{}, c40{}, c41{}, c50{}, c51{};
  for (int64_t k = 0; k < kc; ++k, A += kMR, B += NR) {
    const V b0 = vload<T, Bytes>(B), b1 = vload<T, Bytes>(B + L);
    T a = A[0];
    c00 += a * b0, c01 += a * b1;
    a = A[1];
    c10 += a * b0, c11 += a * b1;
    a = A[2];
    c20 += a * b0, c21 += a * b1;
    a = A[3];
    c30 += a * b0, c31 += a * b1;
    a = A[4];
    c40 += a * b0, c41 += a * b1;
    a = A[5];
    c50 += a * b0, c51 += a * b1;
  }
  const V rows[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                          {c30, c31}, {c40, c41}, {c50, c51}};
  if (mr == kMR && nr == NR) {
    for (int r = 0; r < kMR; ++r) {
      for (int w = 0; w < 2; ++w) {
        T *c = C.at(i0 + r, j0 + w * L);
        vstore<T, Bytes>(c, accumulate ? vload<T, Bytes>(c) + rows[r][w] : rows[r][w]);
      }
    }
    return;
  }
  alignas(64) T tile[kMR * NR];
  for (int r = 0; r < kMR; ++r) {
    vstore<T, Bytes>(tile + r * NR, rows[r][0]);
    vstore<T, Bytes>(tile + r * NR + L, rows[r][1]);
  }
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) {
      T *c = C.at(i0 + r, j0 + j);
      *c = accumulate ? *c + tile[r * NR + j] : tile[r * NR + j];
    }
}

// Every MR x NR tile of C[0:mc, strips s0..s1 of NR columns] from packed A and B.
// (C's block starts at row i0, column j0 of the view.)
template <class T, int Bytes, class CView>
NEEDLE_INLINE void macro_kernel(int64_t mc, int64_t nc, int64_t kc, int64_t s0, int64_t s1,
                                const T *Ap, const T *Bp, const CView &C, int64_t i0,
                                int64_t j0, bool accumulate) {
  constexpr int NR = kNR<T, Bytes>();
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t j = s * NR;
    const int nr = static_cast<int>(std::min<int64_t>(NR, nc - j));
    for (int64_t i = 0; i < mc; i += kMR)
      micro_kernel<T, Bytes>(kc, Ap + i * kc, Bp + s * kc * NR, C, i0 + i, j0 + j,
                             static_cast<int>(std::min<int64_t>(kMR, mc - i)), nr, accumulate);
  }
}

#ifdef NEEDLE_X86_AVX512
// The AVX-512 micro-kernel, in intrinsics: a zmm register of T, with masked stores for the
// edges (no staging tile).
template <class T> struct Zmm;
template <> struct Zmm<float> {
  typedef __m512 V;
  static constexpr int L = 16;
  NEEDLE_AVX512 static NEEDLE_INLINE V zero() { return _mm512_setzero_ps(); }
  NEEDLE_AVX512 static NEEDLE_INLINE V load(const float *p) { return _mm512_loadu_ps(p); }
  NEEDLE_AVX512 static NEEDLE_INLINE V fma(float a, V b, V c) {
    return _mm512_fmadd_ps(_mm512_set1_ps(a), b, c);
  }
  // c[0:count] (+)= v[0:count], count in [1, 16]
  NEEDLE_AVX512 static NEEDLE_INLINE void store(float *c, V v, int count, bool accumulate) {
    if (count >= 16) {  // (unmasked: AMD's masked stores are slow)
      _mm512_storeu_ps(c, accumulate ? _mm512_add_ps(v, _mm512_loadu_ps(c)) : v);
      return;
    }
    const __mmask16 m = static_cast<__mmask16>((1u << count) - 1);
    if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, c));
    _mm512_mask_storeu_ps(c, m, v);
  }
  // The same for lanes 8h..8h+7 of v (h = 0 or 1), count in [1, 8]: a tiled row's 8 columns.
  NEEDLE_AVX512 static NEEDLE_INLINE void store_half(float *c, V v, int h, int count,
                                                     bool accumulate) {
    __m256 x = h ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v);
    if (count >= 8) {
      _mm256_storeu_ps(c, accumulate ? _mm256_add_ps(x, _mm256_loadu_ps(c)) : x);
      return;
    }
    const __mmask8 m = static_cast<__mmask8>((1u << count) - 1);
    if (accumulate) x = _mm256_add_ps(x, _mm256_maskz_loadu_ps(m, c));
    _mm256_mask_storeu_ps(c, m, x);
  }
};
template <> struct Zmm<double> {
  typedef __m512d V;
  static constexpr int L = 8;
  NEEDLE_AVX512 static NEEDLE_INLINE V zero() { return _mm512_setzero_pd(); }
  NEEDLE_AVX512 static NEEDLE_INLINE V load(const double *p) { return _mm512_loadu_pd(p); }
  NEEDLE_AVX512 static NEEDLE_INLINE V fma(double a, V b, V c) {
    return _mm512_fmadd_pd(_mm512_set1_pd(a), b, c);
  }
  NEEDLE_AVX512 static NEEDLE_INLINE void store(double *c, V v, int count, bool accumulate) {
    if (count >= 8) {
      _mm512_storeu_pd(c, accumulate ? _mm512_add_pd(v, _mm512_loadu_pd(c)) : v);
      return;
    }
    const __mmask8 m = static_cast<__mmask8>((1u << count) - 1);
    if (accumulate) v = _mm512_add_pd(v, _mm512_maskz_loadu_pd(m, c));
    _mm512_mask_storeu_pd(c, m, v);
  }
};

// Column j0 + c of a row of C, from the row's pointer at column j0: in the tiled layout (j0
// and c multiples of 8) the next 8 columns are the next tile, 64 elements on.
template <bool Tiled, class T> NEEDLE_INLINE T *column(T *row, int c) {
  return Tiled ? row + (c >> 3) * (kTileSize * kTileSize) : row + c;
}

// Columns c..c+count-1 (count <= L) of a row of C (+)= v. In the tiled layout only 8 columns
// from a multiple of 8 are contiguous: a 16-float vector goes out as two halves.
template <class T, bool Tiled>
NEEDLE_AVX512 NEEDLE_INLINE void store_row(T *row, int c, typename Zmm<T>::V v, int count,
                                           bool accumulate) {
  if constexpr (Tiled && Zmm<T>::L > kTileSize) {
    Zmm<T>::store_half(column<Tiled>(row, c), v, 0, std::min(count, 8), accumulate);
    if (count > 8) Zmm<T>::store_half(column<Tiled>(row, c + 8), v, 1, count - 8, accumulate);
  } else {
    Zmm<T>::store(column<Tiled>(row, c), v, count, accumulate);
  }
}

// C[0:mr, 0:nr] (+)= A_strip (kc x 14) @ B_strip (kc x NR, the first W vectors of each row).
template <class T, int W, bool Tiled>
NEEDLE_AVX512 NEEDLE_INLINE void micro_kernel_512(int64_t kc, const T *A, const T *B,
                                                  const View<T *, Tiled> &C, int64_t i0,
                                                  int64_t j0, int mr, int nr, bool accumulate) {
  using Z = Zmm<T>;
  using V = typename Z::V;
  constexpr int L = Z::L, MR = Blocking<T, 64>::MR, NR = Blocking<T, 64>::NR;
  V c[MR][W];
  T *rows[MR];  // row r of the tile at column j0
  // C's tile goes into L1 while a long enough k loop runs: one prefetch per 64-byte line
  // (per 32-byte run of 8 floats in the tiled layout)
  constexpr int line = (Tiled ? 32 : 64) / static_cast<int>(sizeof(T));
  const bool prefetch = kc >= 32;
#pragma GCC unroll 14
  for (int r = 0; r < MR; ++r) {
    rows[r] = C.at(i0 + std::min(r, mr - 1), j0);
    if (prefetch && r < mr)
      for (int col = 0; col < nr; col += line)
        _mm_prefetch(reinterpret_cast<const char *>(column<Tiled>(rows[r], col)), _MM_HINT_T0);
#pragma GCC unroll 2
    for (int w = 0; w < W; ++w) c[r][w] = Z::zero();
  }
  for (int64_t k = 0; k < kc; ++k, A += MR, B += NR) {
    V b[W];
#pragma GCC unroll 2
    for (int w = 0; w < W; ++w) b[w] = Z::load(B + w * L);
#pragma GCC unroll 14
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int w = 0; w < W; ++w) c[r][w] = Z::fma(A[r], b[w], c[r][w]);
  }
#pragma GCC unroll 14
  for (int r = 0; r < MR; ++r) {
    if (r >= mr) break;
#pragma GCC unroll 2
    for (int w = 0; w < W; ++w)
      store_row<T, Tiled>(rows[r], w * L, c[r][w], std::min(nr - w * L, L), accumulate);
  }
}

template <class T, bool Tiled>
NEEDLE_AVX512 NEEDLE_INLINE void macro_kernel_512(int64_t mc, int64_t nc, int64_t kc, int64_t s0,
                                                  int64_t s1, const T *Ap, const T *Bp,
                                                  const View<T *, Tiled> &C, int64_t i0,
                                                  int64_t j0, bool accumulate) {
  constexpr int L = Zmm<T>::L, MR = Blocking<T, 64>::MR, NR = Blocking<T, 64>::NR;
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t j = s * NR;
    const int nr = static_cast<int>(std::min<int64_t>(NR, nc - j));
    const T *B = Bp + s * kc * NR;
    for (int64_t i = 0; i < mc; i += MR) {
      const int mr = static_cast<int>(std::min<int64_t>(MR, mc - i));
      if (nr > L)
        micro_kernel_512<T, 2>(kc, Ap + i * kc, B, C, i0 + i, j0 + j, mr, nr, accumulate);
      else
        micro_kernel_512<T, 1>(kc, Ap + i * kc, B, C, i0 + i, j0 + j, mr, nr, accumulate);
    }
  }
}
#endif

// One 8x8 tile of the tiled layout: C = sum over nt pairs of A tiles (step 64) and B tiles
// (step b_step). R rows at a time, so that R x (vectors per row) = 8 accumulators.
template <class T, int Bytes>
NEEDLE_INLINE void tile_product(const T *A, const T *B, T *C, int64_t nt, int64_t b_step) {
  using V = typename Simd<T, Bytes>::V;
  constexpr int L = lanes<T, Bytes>(), W = kTileSize / L, R = kTileSize / W;
  constexpr int64_t area = kTileSize * kTileSize;
  for (int r0 = 0; r0 < kTileSize; r0 += R) {
    V acc[R][W] = {};
    const T *a = A + r0 * kTileSize, *b = B;
    for (int64_t k = 0; k < nt; ++k, a += area, b += b_step) {
      for (int kk = 0; kk < kTileSize; ++kk) {
        V row[W];
        for (int w = 0; w < W; ++w) row[w] = vload<T, Bytes>(b + kk * kTileSize + w * L);
        for (int r = 0; r < R; ++r) {
          const T x = a[r * kTileSize + kk];
          for (int w = 0; w < W; ++w) acc[r][w] += x * row[w];
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int w = 0; w < W; ++w) vstore<T, Bytes>(C + (r0 + r) * kTileSize + w * L, acc[r][w]);
  }
}

// Output tiles t0..t1 (row-major over the (m/8, p/8) tile grid).
template <class T, int Bytes>
NEEDLE_INLINE void tiled_range(const T *A, const T *B, T *C, int64_t nt, int64_t pt, int64_t t0,
                               int64_t t1) {
  constexpr int64_t area = kTileSize * kTileSize;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t i = t / pt, j = t % pt;
    tile_product<T, Bytes>(A + i * nt * area, B + j * area, C + t * area, nt, pt * area);
  }
}

// The ISA variants: non-inline entry points carrying the target attribute.
#define NEEDLE_MACRO_KERNEL(BYTES, ATTR, T, TILED)                                           \
  ATTR void run_macro_kernel(Isa<BYTES>, int64_t mc, int64_t nc, int64_t kc, int64_t s0,      \
                             int64_t s1, const T *Ap, const T *Bp, const View<T *, TILED> &C, \
                             int64_t i0, int64_t j0, bool accumulate) {                       \
    macro_kernel<T, BYTES>(mc, nc, kc, s0, s1, Ap, Bp, C, i0, j0, accumulate);                \
  }
#define NEEDLE_MATMUL_KERNELS(BYTES, ATTR, T)                                              \
  NEEDLE_MACRO_KERNEL(BYTES, ATTR, T, false)                                                \
  NEEDLE_MACRO_KERNEL(BYTES, ATTR, T, true)                                                 \
  ATTR void run_tiled(Isa<BYTES>, const T *A, const T *B, T *C, int64_t nt, int64_t pt,     \
                      int64_t t0, int64_t t1) {                                             \
    tiled_range<T, BYTES>(A, B, C, nt, pt, t0, t1);                                         \
  }
#define NEEDLE_MATMUL_VARIANT(BYTES, ATTR) \
  NEEDLE_MATMUL_KERNELS(BYTES, ATTR, float) NEEDLE_MATMUL_KERNELS(BYTES, ATTR, double)
NEEDLE_FOR_EACH_ISA(NEEDLE_MATMUL_VARIANT)
#undef NEEDLE_MATMUL_VARIANT
#undef NEEDLE_MATMUL_KERNELS
#undef NEEDLE_MACRO_KERNEL

#ifdef NEEDLE_X86_AVX512
// The AVX-512 entry points. Small tiled products (run_tiled) use the AVX2 tile kernel, compiled
// for AVX-512 (8 columns of a tile are one 32-byte vector of floats).
#define NEEDLE_MATMUL_KERNELS_512(T)                                                          \
  NEEDLE_AVX512 void run_macro_kernel(Isa<64>, int64_t mc, int64_t nc, int64_t kc, int64_t s0, \
                                      int64_t s1, const T *Ap, const T *Bp,                    \
                                      const View<T *, false> &C, int64_t i0, int64_t j0,       \
                                      bool accumulate) {                                       \
    macro_kernel_512<T, false>(mc, nc, kc, s0, s1, Ap, Bp, C, i0, j0, accumulate);             \
  }                                                                                            \
  NEEDLE_AVX512 void run_macro_kernel(Isa<64>, int64_t mc, int64_t nc, int64_t kc, int64_t s0, \
                                      int64_t s1, const T *Ap, const T *Bp,                    \
                                      const View<T *, true> &C, int64_t i0, int64_t j0,        \
                                      bool accumulate) {                                       \
    macro_kernel_512<T, true>(mc, nc, kc, s0, s1, Ap, Bp, C, i0, j0, accumulate);              \
  }                                                                                            \
  NEEDLE_AVX512 void run_tiled(Isa<64>, const T *A, const T *B, T *C, int64_t nt, int64_t pt,  \
                               int64_t t0, int64_t t1) {                                       \
    tiled_range<T, 32>(A, B, C, nt, pt, t0, t1);                                               \
  }
NEEDLE_MATMUL_KERNELS_512(float)
NEEDLE_MATMUL_KERNELS_512(double)
#undef NEEDLE_MATMUL_KERNELS_512
#endif

// The GEMM variant in use: 16 (baseline), 32 (AVX2 + FMA) or 64 (AVX-512) bytes per vector.
// By default the widest the CPU has; NEEDLE_GEMM_ISA (baseline, avx2, avx512) or
// set_gemm_isa() picks another, for tests and comparisons.
int best_gemm_isa() { return cpu_has_avx512() ? 64 : cpu_has_avx2() ? 32 : 16; }

int parse_gemm_isa(const std::string &name) {
  int bytes = 0;
  if (name == "auto") bytes = best_gemm_isa();
  else if (name == "baseline") bytes = 16;
  else if (name == "avx2") bytes = 32;
  else if (name == "avx512") bytes = 64;
  else
    throw py::value_error("gemm isa: expected auto, baseline, avx2 or avx512, got '" + name +
                          "'");
  if ((bytes == 32 && !cpu_has_avx2()) || (bytes == 64 && !cpu_has_avx512()))
    throw py::value_error("gemm isa: this CPU (or build) has no " + name);
  return bytes;
}

std::atomic<int> gemm_isa_bytes{0};  // 0: not settled yet

int current_gemm_isa() {
  int bytes = gemm_isa_bytes.load(std::memory_order_relaxed);
  if (bytes == 0) {
    const char *value = std::getenv("NEEDLE_GEMM_ISA");
    bytes = best_gemm_isa();
    if (value != nullptr && *value != '\0') {
      try {
        bytes = parse_gemm_isa(value);
      } catch (const py::value_error &) {  // a bad variable falls back to the default
      }
    }
    gemm_isa_bytes.store(bytes, std::memory_order_relaxed);
  }
  return bytes;
}

void set_gemm_isa(const std::string &name) {
  gemm_isa_bytes.store(parse_gemm_isa(name), std::memory_order_relaxed);
}

std::string gemm_isa() {
  const int bytes = current_gemm_isa();
  return bytes == 64 ? "avx512" : bytes == 32 ? "avx2" : "baseline";
}

// Calls f(Isa<bytes>{}) for the GEMM variant in use.
template <class F> void with_isa(F &&f) {
  switch (current_gemm_isa()) {
#ifdef NEEDLE_X86_AVX512
    case 64:
      return f(Isa<64>{});
#endif
#ifdef NEEDLE_X86_AVX2
    case 32:
      return f(Isa<32>{});
#endif
    default:
      return f(Isa<16>{});
  }
}

// B[k0:k0+kc, j0:j0+width) into a kc x NR strip, zero-padded to NR columns. (Tiled: a run
// of columns up to the next multiple of 8 is contiguous.)
template <int NR, class T, bool Tiled>
void pack_b_strip(const View<const T *, Tiled> &B, int64_t k0, int64_t j0, int64_t kc,
                  int64_t width, T *dst) {
  for (int64_t k = 0; k < kc; ++k, dst += NR) {
    int64_t j = 0;
    if constexpr (Tiled) {
      while (j < width) {
        const int64_t run = std::min<int64_t>(width - j, kTileSize - ((j0 + j) & (kTileSize - 1)));
        const T *src = B.at(k0 + k, j0 + j);
        for (int64_t u = 0; u < run; ++u) dst[j + u] = src[u];
        j += run;
      }
    } else {
      const T *src = B.at(k0 + k, j0);
      for (; j < width; ++j) dst[j] = src[j];
    }
    for (; j < NR; ++j) dst[j] = T(0);
  }
}

// A[i0:i0+mc, k0:k0+kc] into MR-row strips, k-major inside a strip, zero-padded. Eight
// columns at a time (8 x MR writes that stay in L1; in the tiled layout, one contiguous run
// of a tile's row: there k0 and kc are multiples of 8).
template <int MR, class T, bool Tiled>
void pack_a(const View<const T *, Tiled> &A, int64_t i0, int64_t k0, int64_t mc, int64_t kc,
            T *dst) {
  constexpr int K = kTileSize;
  for (int64_t i = 0; i < mc; i += MR, dst += MR * kc) {
    const int64_t h = std::min<int64_t>(MR, mc - i);
    for (int64_t k = 0; k < kc; k += K) {
      const int w = static_cast<int>(std::min<int64_t>(K, kc - k));
      T *d = dst + k * MR;
      for (int64_t r = 0; r < h; ++r) {
        const T *src = A.at(i0 + i + r, k0 + k);
        for (int u = 0; u < w; ++u) d[u * MR + r] = src[u];
      }
      for (int64_t r = h; r < MR; ++r)
        for (int u = 0; u < w; ++u) d[u * MR + r] = T(0);
    }
  }
}

// Packing per variant: the loops above, and for AVX-512 vector loads (masked at the edges),
// with 16 x 16 register transposes for float32's A strips.
template <int Bytes, class T, bool Tiled>
void pack_a_for(Isa<Bytes>, const View<const T *, Tiled> &A, int64_t i0, int64_t k0, int64_t mc,
                int64_t kc, T *dst) {
  pack_a<Blocking<T, Bytes>::MR>(A, i0, k0, mc, kc, dst);
}
template <int Bytes, class T, bool Tiled>
void pack_b_for(Isa<Bytes>, const View<const T *, Tiled> &B, int64_t k0, int64_t j0, int64_t kc,
                int64_t width, T *dst) {
  pack_b_strip<Blocking<T, Bytes>::NR>(B, k0, j0, kc, width, dst);
}

// Packing from a transposed operand: the same packed strips as packing its compacted copy
// (so the same sums in the same order), read along the storage's rows. A's strips: each k is
// one contiguous run of the storage's row k0 + k, spread over the strips' k-rows of MR.
template <int MR, class T>
void pack_a_t(const TView<const T *> &A, int64_t i0, int64_t k0, int64_t mc, int64_t kc,
              T *dst) {
  const int64_t strips = (mc + MR - 1) / MR;
  for (int64_t k = 0; k < kc; ++k) {
    const T *src = A.at(i0, k0 + k);
    for (int64_t s = 0; s < strips; ++s) {
      T *d = dst + s * MR * kc + k * MR;
      const int64_t h = std::min<int64_t>(MR, mc - s * MR);
      const T *row = src + s * MR;
      int64_t r = 0;
      for (; r < h; ++r) d[r] = row[r];
      for (; r < MR; ++r) d[r] = T(0);
    }
  }
}
// B's strip: column j of the strip is the storage's row j0 + j, contiguous along k; 8 of them
// at a time so the strip's k-rows stay in L1 while they are written.
template <int NR, class T>
void pack_b_t(const TView<const T *> &B, int64_t k0, int64_t j0, int64_t kc, int64_t width,
              T *dst) {
  constexpr int64_t K = 64;
  for (int64_t kb = 0; kb < kc; kb += K) {
    const int64_t ke = std::min<int64_t>(kc, kb + K);
    for (int64_t j = 0; j < width; ++j) {
      const T *src = B.at(k0, j0 + j);
      for (int64_t k = kb; k < ke; ++k) dst[k * NR + j] = src[k];
    }
    for (int64_t k = kb; k < ke; ++k)
      for (int64_t j = width; j < NR; ++j) dst[k * NR + j] = T(0);
  }
}
template <int Bytes, class T>
void pack_a_for(Isa<Bytes>, const TView<const T *> &A, int64_t i0, int64_t k0, int64_t mc,
                int64_t kc, T *dst) {
  pack_a_t<Blocking<T, Bytes>::MR>(A, i0, k0, mc, kc, dst);
}
template <int Bytes, class T>
void pack_b_for(Isa<Bytes>, const TView<const T *> &B, int64_t k0, int64_t j0, int64_t kc,
                int64_t width, T *dst) {
  pack_b_t<Blocking<T, Bytes>::NR>(B, k0, j0, kc, width, dst);
}

// Floats the AVX-512 A packing may write past a block (see pack_a_512).
constexpr int64_t kPackSlack = 16;

#ifdef NEEDLE_X86_AVX512
NEEDLE_AVX512 NEEDLE_INLINE __mmask16 first_lanes16(int count) {
  return static_cast<__mmask16>(count >= 16 ? 0xFFFFu : count <= 0 ? 0u : (1u << count) - 1);
}
NEEDLE_AVX512 NEEDLE_INLINE __mmask8 first_lanes8(int count) {
  return static_cast<__mmask8>(count >= 8 ? 0xFFu : count <= 0 ? 0u : (1u << count) - 1);
}

// Row i, columns j..j+count-1 (count <= L; zeros beyond) as one vector. Tiled float32: two
// runs of 8 (count is a multiple of 8 there).
template <class T, bool Tiled>
NEEDLE_AVX512 NEEDLE_INLINE typename Zmm<T>::V load_run(const View<const T *, Tiled> &M,
                                                        int64_t i, int64_t j, int count) {
  if constexpr (std::is_same<T, float>::value) {
    if constexpr (Tiled) {
      const __m256 lo = _mm256_maskz_loadu_ps(first_lanes8(count), M.at(i, j));
      const __m256 hi = count > 8 ? _mm256_maskz_loadu_ps(first_lanes8(count - 8), M.at(i, j + 8))
                                  : _mm256_setzero_ps();
      return _mm512_insertf32x8(_mm512_zextps256_ps512(lo), hi, 1);
    } else {
      return _mm512_maskz_loadu_ps(first_lanes16(count), M.at(i, j));
    }
  } else {
    return _mm512_maskz_loadu_pd(first_lanes8(count), M.at(i, j));
  }
}

// r[q] lane c -> r[c] lane q.
NEEDLE_AVX512 NEEDLE_INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // s[4g + c], 128-bit lane l: column 4l + c of rows 4g..4g+3
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 1]), d = _mm512_castps_pd(t[4 * g + 3]);
    r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  // a 4 x 4 transpose of 128-bit lanes for each c
  for (int c = 0; c < 4; ++c) {
    const __m512 x0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
    const __m512 x1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    const __m512 y0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
    const __m512 y1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    t[c] = _mm512_shuffle_f32x4(x0, y0, 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(x1, y1, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
  }
  for (int q = 0; q < 16; ++q) r[q] = t[q];
}

// float32 A strips of 14 rows: 16 columns of the strip's rows (two zero rows added) loaded,
// transposed, and written out as 16 k-rows of 14. The stores are full 16-lane ones (AMD's
// masked stores are slow), each overwriting the first two floats of the next k-row, which the
// next store rewrites; the last one writes two floats past the strip (the buffer has room).
constexpr int64_t kPrefetchA = 128;  // floats ahead along k (8 cache lines; 64 and 256 measured slower)
template <bool Tiled>
NEEDLE_AVX512 void pack_a_512(const View<const float *, Tiled> &A, int64_t i0, int64_t k0,
                              int64_t mc, int64_t kc, float *dst) {
  constexpr int MR = Blocking<float, 64>::MR;
  for (int64_t i = 0; i < mc; i += MR, dst += MR * kc) {
    const int h = static_cast<int>(std::min<int64_t>(MR, mc - i));
    for (int64_t k = 0; k < kc; k += 16) {
      const int w = static_cast<int>(std::min<int64_t>(16, kc - k));
      __m512 r[16];
#pragma GCC unroll 16
      for (int q = 0; q < 16; ++q) {
        if (q < h) {
          _mm_prefetch(reinterpret_cast<const char *>(A.at(i0 + i + q, k0 + k + kPrefetchA)),
                       _MM_HINT_T0);
          if constexpr (Tiled)
            _mm_prefetch(reinterpret_cast<const char *>(A.at(i0 + i + q, k0 + k + kPrefetchA + 8)),
                         _MM_HINT_T0);
        }
        r[q] = q < h ? load_run(A, i0 + i + q, k0 + k, w) : _mm512_setzero_ps();
      }
      transpose16(r);
      float *d = dst + k * MR;
      if (w == 16) {
#pragma GCC unroll 16
        for (int u = 0; u < 16; ++u) _mm512_storeu_ps(d + u * MR, r[u]);
      } else {
        for (int u = 0; u < w; ++u) _mm512_storeu_ps(d + u * MR, r[u]);
      }
    }
  }
}

// B[k0:k0+kc, j0:j0+width) into a kc x NR strip (two vectors a row), zero-padded.
template <class T, bool Tiled>
NEEDLE_AVX512 void pack_b_512(const View<const T *, Tiled> &B, int64_t k0, int64_t j0,
                              int64_t kc, int64_t width, T *dst) {
  constexpr int L = Zmm<T>::L, NR = Blocking<T, 64>::NR;
  const int w = static_cast<int>(width);
  for (int64_t k = 0; k < kc; ++k, dst += NR) {
    const typename Zmm<T>::V lo = load_run(B, k0 + k, j0, std::min(w, L));
    const typename Zmm<T>::V hi =
        w > L ? load_run(B, k0 + k, j0 + L, w - L) : typename Zmm<T>::V{};
    Zmm<T>::store(dst, lo, L, false);
    Zmm<T>::store(dst + L, hi, L, false);
  }
}

// float32 A strips from a transposed operand: each k is a contiguous run of the storage's row
// k0 + k; one masked 16-lane load per strip row, stored whole (its two extra lanes land on
// the next k-row, written after it) except on the last k-row, where they would reach the
// next strip's first.
NEEDLE_AVX512 void pack_a_t_512(const TView<const float *> &A, int64_t i0, int64_t k0,
                                int64_t mc, int64_t kc, float *dst) {
  constexpr int MR = Blocking<float, 64>::MR;
  const int64_t strips = (mc + MR - 1) / MR;
  const __mmask16 strip_row = first_lanes16(MR);
  for (int64_t k = 0; k < kc; ++k) {
    const float *src = A.at(i0, k0 + k);
    const float *ahead = A.at(i0, k0 + std::min(k + 4, kc - 1));  // short rows far apart: the
    float *d = dst + k * MR;                                      // prefetcher misses them
    for (int64_t st = 0; st < strips; ++st, d += MR * kc) {
      const int h = static_cast<int>(std::min<int64_t>(MR, mc - st * MR));
      _mm_prefetch(reinterpret_cast<const char *>(ahead + st * MR), _MM_HINT_T0);
      const __m512 v = _mm512_maskz_loadu_ps(first_lanes16(h), src + st * MR);
      if (k + 1 < kc)
        _mm512_storeu_ps(d, v);
      else
        _mm512_mask_storeu_ps(d, strip_row, v);
    }
  }
}
NEEDLE_AVX512 void pack_a_for(Isa<64>, const TView<const float *> &A, int64_t i0, int64_t k0,
                              int64_t mc, int64_t kc, float *dst) {
  pack_a_t_512(A, i0, k0, mc, kc, dst);
}

#define NEEDLE_PACK_512(TILED)                                                                 \
  NEEDLE_AVX512 void pack_a_for(Isa<64>, const View<const float *, TILED> &A, int64_t i0,      \
                                int64_t k0, int64_t mc, int64_t kc, float *dst) {              \
    pack_a_512(A, i0, k0, mc, kc, dst);                                                        \
  }                                                                                            \
  NEEDLE_AVX512 void pack_b_for(Isa<64>, const View<const float *, TILED> &B, int64_t k0,      \
                                int64_t j0, int64_t kc, int64_t width, float *dst) {           \
    pack_b_512(B, k0, j0, kc, width, dst);                                                     \
  }                                                                                            \
  NEEDLE_AVX512 void pack_b_for(Isa<64>, const View<const double *, TILED> &B, int64_t k0,     \
                                int64_t j0, int64_t kc, int64_t width, double *dst) {          \
    pack_b_512(B, k0, j0, kc, width, dst);                                                     \
  }
NEEDLE_PACK_512(false)
NEEDLE_PACK_512(true)
#undef NEEDLE_PACK_512
#endif

// Small products: row i of C = sum_k A[i, k] * B[k, :], vectorised along the row.
template <class T> void gemm_small(const T *A, const T *B, T *C, int64_t m, int64_t n, int64_t p) {
  for (int64_t i = 0; i < m; ++i) {
    T *c = C + i * p;
    std::fill(c, c + p, T(0));
    for (int64_t k = 0; k < n; ++k) {
      const T a = A[i * n + k];
      const T *b = B + k * p;
      for (int64_t j = 0; j < p; ++j) c[j] += a * b[j];
    }
  }
}

// Narrow outputs (p < 4, e.g. a matrix-vector product): dot products against B's columns.
template <class T> void gemm_narrow(const T *A, const T *B, T *C, int64_t m, int64_t n, int64_t p) {
  std::vector<T> bt(static_cast<size_t>(n * p));
  for (int64_t k = 0; k < n; ++k)
    for (int64_t j = 0; j < p; ++j) bt[j * n + k] = B[k * p + j];
  parallel_for(m, 2 * n * p, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      for (int64_t j = 0; j < p; ++j) {
        const T *a = A + i * n, *b = bt.data() + j * n;
        T r[8] = {};
        int64_t k = 0;
        for (; k + 8 <= n; k += 8)
          for (int u = 0; u < 8; ++u) r[u] += a[k + u] * b[k + u];
        T s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; k < n; ++k) s += a[k] * b[k];
        C[i * p + j] = s;
      }
  });
}

// C (m x p) = A (m x n) @ B (n x p); overwrites C. B is packed a panel at a time (NC columns,
// as many KC-row blocks as fit kPanelBytes: all of B in the DCGAN's products), in parallel
// over its strips; then one parallel pass over (row block, column group) items, each looping
// over the panel's KC blocks, packing its A block into its thread's buffer and running the
// macro-kernel: two parallel regions per panel, not two per KC block (waking a pool thread
// costs tens of microseconds).
constexpr int64_t kPanelBytes = int64_t(8) << 20;
template <class T, int Bytes, class AView, class BView, class CView>
void gemm_views(const AView &A, const BView &B, const CView &C, int64_t m, int64_t n,
                int64_t p) {
  using Block = Blocking<T, Bytes>;
  constexpr int MR = Block::MR, NR = Block::NR;
  const int threads = static_cast<double>(m) * n * p < 4.0 * kParallelWork ? 1 : num_threads();
  // Row blocks of at most MC rows (whole MR-row strips) and of nearly equal heights; with
  // threads, four per thread where m allows (two threads on one row block both pack it), but
  // of four strips at least (a B strip in L1 serves every strip of a block: with fewer, B's
  // strips stream from L3 once per block; small m splits columns instead, below).
  const int64_t strips_m = (m + MR - 1) / MR;
  int64_t row_blocks = std::max<int64_t>(
      (m + Block::MC - 1) / Block::MC,
      std::min<int64_t>(threads == 1 ? 1 : 4 * threads, std::max<int64_t>(1, strips_m / 4)));
  const int64_t mc = (strips_m + row_blocks - 1) / row_blocks * MR;
  row_blocks = (m + mc - 1) / mc;
  const int64_t kc_max = std::min<int64_t>(Block::KC, n), nc_max = std::min<int64_t>(Block::NC, p);
  const int64_t strips_max = (nc_max + NR - 1) / NR;
  const int64_t k_blocks = (n + Block::KC - 1) / Block::KC;
  const int64_t block_size = kc_max * strips_max * NR;  // one KC block of a panel
  const int64_t panel_blocks = std::max<int64_t>(
      1, std::min<int64_t>(k_blocks, kPanelBytes / static_cast<int64_t>(sizeof(T)) / block_size));
  auto b_pack = scratch<T>(static_cast<size_t>(panel_blocks * block_size));
  auto a_pack = scratch<T>(static_cast<size_t>(threads * (mc * kc_max + kPackSlack)));
  for (int64_t jc = 0; jc < p; jc += Block::NC) {
    const int64_t nc = std::min<int64_t>(Block::NC, p - jc);
    const int64_t strips = (nc + NR - 1) / NR;
    // Column groups, so that row blocks x groups gives every thread a few items.
    const int64_t groups = threads == 1 ? 1 : std::min<int64_t>(
        strips, std::max<int64_t>(1, (4 * threads + row_blocks - 1) / row_blocks));
    const int64_t per_group = (strips + groups - 1) / groups;
    for (int64_t kb0 = 0; kb0 < k_blocks; kb0 += panel_blocks) {
      const int64_t kb1 = std::min<int64_t>(k_blocks, kb0 + panel_blocks);
      T *Bp = b_pack.get();
      parallel_for((kb1 - kb0) * strips, kc_max * NR, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t kb = kb0 + t / strips, s = t % strips;
          const int64_t pc = kb * Block::KC, kc = std::min<int64_t>(Block::KC, n - pc);
          pack_b_for(Isa<Bytes>{}, B, pc, jc + s * NR, kc, std::min<int64_t>(NR, nc - s * NR),
                     Bp + (t / strips) * block_size + s * kc * NR);
        }
      });
      auto item = [&](int64_t index, int slot) {
        const int64_t block = index / groups, group = index % groups;
        const int64_t ic = block * mc, rows = std::min<int64_t>(mc, m - ic);
        const int64_t s0 = group * per_group, s1 = std::min<int64_t>(strips, s0 + per_group);
        if (s0 >= s1) return;
        T *Ap = a_pack.get() + slot * (mc * kc_max + kPackSlack);
        for (int64_t kb = kb0; kb < kb1; ++kb) {
          const int64_t pc = kb * Block::KC, kc = std::min<int64_t>(Block::KC, n - pc);
          pack_a_for(Isa<Bytes>{}, A, ic, pc, rows, kc, Ap);
          run_macro_kernel(Isa<Bytes>{}, rows, nc, kc, s0, s1, Ap, Bp + (kb - kb0) * block_size,
                           C, ic, jc, pc > 0);
        }
      };
      if (threads == 1)
        for (int64_t i = 0; i < row_blocks * groups; ++i) item(i, 0);
      else
        pool().run(row_blocks * groups, item);
    }
  }
}

template <class T, int Bytes, bool Tiled>
void gemm_blocked(const View<const T *, Tiled> &A, const View<const T *, Tiled> &B,
                  const View<T *, Tiled> &C, int64_t m, int64_t n, int64_t p) {
  gemm_views<T, Bytes>(A, B, C, m, n, p);
}

// Products of at most kSmallGemm multiply-adds, or of one row, skip the packing (it costs more
// than it saves there): gemm_small. gemm() picks its kernel by these two tests, and
// matmul_strided by the same ones, so a view's product has the bits of its compacted copy's.
constexpr double kSmallGemm = 32768.0;
inline bool gemm_is_small(int64_t m, int64_t n, int64_t p) {
  return static_cast<double>(m) * n * p <= kSmallGemm || m < 2;
}
inline bool gemm_is_blocked(int64_t m, int64_t n, int64_t p) {
  return !gemm_is_small(m, n, p) && p >= 4;  // else gemm_narrow
}

template <class T> void gemm(const T *A, const T *B, T *C, int64_t m, int64_t n, int64_t p) {
  if (m == 0 || p == 0) return;
  if (n == 0) return std::fill(C, C + m * p, T(0));
  if (gemm_is_small(m, n, p)) return gemm_small(A, B, C, m, n, p);
  if (!gemm_is_blocked(m, n, p)) return gemm_narrow(A, B, C, m, n, p);
  with_isa([&](auto isa) {
    gemm_blocked<T, decltype(isa)::bytes, false>({A, n}, {B, p}, {C, p}, m, n, p);
  });
}

void matmul(const Array &a, const Array &b, Array &out, int64_t m, int64_t n, int64_t p) {
  const char *fn = "matmul";
  if (m < 0 || n < 0 || p < 0) throw py::value_error("matmul: negative dimension");
  check_size(a, m * n, fn, "a");
  check_size(b, n * p, fn, "b");
  check_size(out, m * p, fn, "out");
  dispatch_float(out.dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta, tb;
    const T *pa = as_type<T>(a, ta, fn, true), *pb = as_type<T>(b, tb, fn, true);
    py::gil_scoped_release release;
    gemm(pa, pb, out.data<T>(), m, n, p);
  });
}

// An operand of matmul_strided: a (rows, cols) view with element strides (sr, sc) at offset.
// Row-major (sc == 1, row stride ld) and transposed (sr == 1, column stride ld) views are read
// in place; any other layout is compacted into `tmp` first.
template <class T> struct Operand {
  const T *p;
  int64_t ld;
  bool trans;
};
template <class T>
Operand<T> operand(const T *base, int64_t rows, int64_t cols, int64_t sr, int64_t sc,
                   std::unique_ptr<T, AlignedDeleter> &tmp) {
  if (cols == 1) sc = 1;
  if (rows == 1) sr = cols;
  if (sc == 1 && sr >= cols) return {base, sr, false};
  if (sr == 1 && sc >= rows) return {base, sc, true};
  tmp = scratch<T>(static_cast<size_t>(rows * cols));
  strided_copy(base, tmp.get(), plan_copy({rows, cols}, {sr, sc}, {cols, 1}));
  return {tmp.get(), cols, false};
}
// A compact row-major copy of an operand, for the kernels that read contiguous operands only.
template <class T>
const T *compacted(const Operand<T> &o, int64_t rows, int64_t cols,
                   std::unique_ptr<T, AlignedDeleter> &tmp) {
  if (!o.trans && o.ld == cols) return o.p;
  tmp = scratch<T>(static_cast<size_t>(rows * cols));
  const std::vector<int64_t> src = o.trans ? std::vector<int64_t>{1, o.ld}
                                           : std::vector<int64_t>{o.ld, 1};
  strided_copy(o.p, tmp.get(), plan_copy({rows, cols}, src, {cols, 1}));
  return tmp.get();
}

// C (m x p, compact) = A @ B over strided views of a and b: matmul without compacting a
// transposed or row-sliced operand first (the packing reads it in place; the packed strips,
// and so the result, are bit for bit those of compacting first).
void matmul_strided(const Array &a, const Array &b, Array &out, int64_t m, int64_t n, int64_t p,
                    const std::vector<int64_t> &a_strides, int64_t a_offset,
                    const std::vector<int64_t> &b_strides, int64_t b_offset) {
  const char *fn = "matmul_strided";
  if (m < 0 || n < 0 || p < 0) throw py::value_error("matmul_strided: negative dimension");
  if (a_strides.size() != 2 || b_strides.size() != 2)
    throw py::value_error("matmul_strided: a_strides and b_strides must have 2 entries");
  check_view(a, {m, n}, a_strides, a_offset, fn);
  check_view(b, {n, p}, b_strides, b_offset, fn);
  check_size(out, m * p, fn, "out");
  dispatch_float(out.dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta, tb;
    const T *pa = as_type<T>(a, ta, fn, true) + a_offset;
    const T *pb = as_type<T>(b, tb, fn, true) + b_offset;
    T *C = out.data<T>();
    py::gil_scoped_release release;
    if (m == 0 || p == 0) return;
    if (n == 0) return std::fill(C, C + m * p, T(0));
    std::unique_ptr<T, AlignedDeleter> ga, gb, ca, cb;
    const Operand<T> A = operand(pa, m, n, a_strides[0], a_strides[1], ga);
    const Operand<T> B = operand(pb, n, p, b_strides[0], b_strides[1], gb);
    if (!gemm_is_blocked(m, n, p))
      return gemm(compacted(A, m, n, ca), compacted(B, n, p, cb), C, m, n, p);
    // f(the operand as the packing's view type: transposed or row-major)
    auto as_view = [](const Operand<T> &o, auto &&f) {
      if (o.trans) return f(TView<const T *>{o.p, o.ld});
      return f(View<const T *, false>{o.p, o.ld});
    };
    with_isa([&](auto isa) {
      constexpr int bytes = decltype(isa)::bytes;
      as_view(A, [&](auto a_view) {
        as_view(B, [&](auto b_view) {
          gemm_views<T, bytes>(a_view, b_view, View<T *, false>{C, p}, m, n, p);
        });
      });
    });
  });
}

// a: (m/T, n/T, T, T) tiles, b: (n/T, p/T, T, T), out: (m/T, p/T, T, T); overwrites out (hw3
// hands it a fresh, uninitialised NDArray.make buffer).
void matmul_tiled(const Array &a, const Array &b, Array &out, int64_t m, int64_t n, int64_t p) {
  const char *fn = "matmul_tiled";
  if (m < 0 || n < 0 || p < 0 || m % kTileSize || n % kTileSize || p % kTileSize)
    throw py::value_error("matmul_tiled: m, n, p must be non-negative multiples of " +
                          std::to_string(kTileSize));
  check_size(a, m * n, fn, "a");
  check_size(b, n * p, fn, "b");
  check_size(out, m * p, fn, "out");
  dispatch_float(out.dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::unique_ptr<Array> ta, tb;
    const T *pa = as_type<T>(a, ta, fn, true), *pb = as_type<T>(b, tb, fn, true);
    T *po = out.data<T>();
    py::gil_scoped_release release;
    const int64_t nt = n / kTileSize, pt = p / kTileSize, tiles = (m / kTileSize) * pt;
    if (nt == 0) return std::fill(po, po + m * p, T(0));
    with_isa([&](auto isa) {
      if (static_cast<double>(m) * n * p > kSmallGemm) {  // pack from the tiles: GEMM speed
        gemm_blocked<T, decltype(isa)::bytes, true>({pa, nt}, {pb, pt}, {po, pt}, m, n, p);
        return;
      }
      parallel_for(tiles, 2 * nt * kTileSize * kTileSize * kTileSize,
                   [&](int64_t t0, int64_t t1) { run_tiled(isa, pa, pb, po, nt, pt, t0, t1); });
    });
  });
}

#if defined(NEEDLE_X86_AVX512) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// ---- fused: kernels for cpu_numpy()'s NumPy arrays and cpu()'s Arrays ---------------------------
// cpu_numpy() keeps its data in NumPy arrays; where this module is built, a few hot passes
// of the convolutions and the optimizer run here instead of as NumPy composites: one pass
// over memory on the pool's threads (needle/backend_ndarray/fused_cpu.py names them and
// documents what each replaces). Each reproduces its composite's float32 arithmetic in the
// same order, so results are the composite's bits (Adam's square root aside: std::sqrt
// against NumPy's power(v, 0.5), within one rounding; BatchNorm's sums, below, aside too).
using Floats = py::array_t<float, py::array::c_style>;

// No a * b + c contracted into one fused multiply-add (the composites round the product
// first): Clang honours the pragma; GCC contracts only where the baseline ISA has FMA
// (aarch64: there Adam may differ from the composite by a rounding; x86-64: never).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

// (N, H, W, C) input with element strides -> (N * OH * OW, KH * KW * C) patches; the
// padding reads as zeros (the composite pads, then gathers through a strided view). Each
// patch row (KW pixels of one input row) is the in-bounds pixels' copy between zero fills:
// one copy of KW * C elements where those pixels are adjacent in memory (stride 1, dense
// channels), one per pixel otherwise.
template <class T>
void im2col_into(const T *src, const int64_t s[4], int64_t n, int64_t h, int64_t w, int64_t c,
                 const std::vector<int64_t> &kernel, const std::vector<int64_t> &stride,
                 const std::vector<int64_t> &padding, const std::vector<int64_t> &dilation,
                 const std::vector<int64_t> &out_size, T *dst) {
  const int64_t kh = kernel[0], kw = kernel[1], oh = out_size[0], ow = out_size[1];
  const int64_t dw = dilation[1], row = kh * kw * c;
  const bool adjacent = (c == 1 || s[3] == 1) && dw * s[2] == c;
  // per output column: its patch's in-bounds kernel columns j in [j0, j1), 0 <= x0 + j * dw
  // < w, worked out once per call (two divisions each, which per patch row cost a grey
  // image's gather as much as its copies)
  std::vector<int64_t> first(ow), last(ow);
  for (int64_t ox = 0; ox < ow; ++ox) {
    const int64_t x0 = ox * stride[1] - padding[1];  // the patch's first column
    first[ox] = x0 >= 0 ? 0 : std::min(kw, (-x0 + dw - 1) / dw);
    last[ox] = x0 >= w ? first[ox] : std::max(first[ox], std::min(kw, (w - 1 - x0) / dw + 1));
  }
  parallel_for(n * oh, ow * row, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / oh, oy = r % oh;
      T *o = dst + r * ow * row;
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t x0 = ox * stride[1] - padding[1], j0 = first[ox], j1 = last[ox];
        for (int64_t i = 0; i < kh; ++i, o += kw * c) {
          const int64_t y = oy * stride[0] - padding[0] + i * dilation[0];
          if (y < 0 || y >= h || j0 == j1) {
            std::fill(o, o + kw * c, T(0));
            continue;
          }
          std::fill(o, o + j0 * c, T(0));
          std::fill(o + j1 * c, o + kw * c, T(0));
          const T *p = src + b * s[0] + y * s[1] + (x0 + j0 * dw) * s[2];
          T *q = o + j0 * c;
          if (adjacent) {
            const int64_t count = (j1 - j0) * c;
            if (count <= 16)  // a grey image's patch row: no memcpy call
              for (int64_t k = 0; k < count; ++k) q[k] = p[k];
            else
              std::memcpy(q, p, sizeof(T) * count);
            continue;
          }
          for (int64_t j = j0; j < j1; ++j, p += dw * s[2], q += c) {
            if (s[3] == 1)
              std::memcpy(q, p, sizeof(T) * c);
            else
              for (int64_t k = 0; k < c; ++k) q[k] = p[k * s[3]];
          }
        }
      }
    }
  });
}

Floats fused_im2col(py::array x, std::vector<int64_t> kernel, std::vector<int64_t> stride,
                    std::vector<int64_t> padding, std::vector<int64_t> dilation,
                    std::vector<int64_t> out_size) {
  if (x.ndim() != 4 || !py::isinstance<py::array_t<float>>(x))
    throw py::value_error("fused im2col: expected a float32 (N, H, W, C) array");
  const int64_t n = x.shape(0), h = x.shape(1), w = x.shape(2), c = x.shape(3);
  int64_t s[4];
  for (int i = 0; i < 4; ++i) s[i] = x.strides(i) / int64_t(sizeof(float));
  Floats out({n * out_size[0] * out_size[1], kernel[0] * kernel[1] * c});
  const float *src = static_cast<const float *>(x.data());
  float *dst = out.mutable_data();
  py::gil_scoped_release release;
  im2col_into(src, s, n, h, w, c, kernel, stride, padding, dilation, out_size, dst);
  return out;
}

// conv_transpose's scatter-add of (N, H, W, KH, KW, C) columns into an (N, CH, CW, C) canvas,
// as a gather, written for the canvas's (OH, OW) window at (oy0, ox0) only (conv_transpose's
// output, the canvas cropped by its padding: no full canvas, no copy of the crop later): each
// pixel sums the columns that land on it, in the composite's kernel offset order (zero, then
// offset (0, 0), (0, 1), ...), so the sums round alike. Which kernel columns reach each output
// column is worked out once per call, not once per pixel.
template <class T>
void col2im_into(const T *src, const int64_t shape[6], const int64_t window[4],
                 const std::vector<int64_t> &stride, const std::vector<int64_t> &dilation,
                 T *dst) {
  const int64_t n = shape[0], h = shape[1], w = shape[2], kh = shape[3], kw = shape[4],
                c = shape[5];
  const int64_t oy0 = window[0], ox0 = window[1], oh = window[2], ow = window[3];
  const int64_t sh = stride[0], sw = stride[1], dh = dilation[0], dw = dilation[1];
  const int64_t pixel = kh * kw * c;  // one input pixel's columns
  // for output column x: count[x] offsets into a column row, in increasing j
  std::vector<int64_t> count(ow, 0), offset(ow * kw);
  for (int64_t x = 0; x < ow; ++x)
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t xx = x + ox0 - j * dw;
      if (xx < 0 || xx % sw != 0 || xx / sw >= w) continue;
      offset[x * kw + count[x]++] = (xx / sw) * pixel + j * c;
    }
  parallel_for(n * oh, ow * c * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / oh, y = r % oh + oy0;
      T *o = dst + r * ow * c;
      std::fill(o, o + ow * c, T(0));
      for (int64_t i = 0; i < kh; ++i) {
        const int64_t yy = y - i * dh;
        if (yy < 0 || yy % sh != 0 || yy / sh >= h) continue;
        const T *base = src + (b * h + yy / sh) * w * pixel + i * kw * c;
        for (int64_t x = 0; x < ow; ++x) {
          T *acc = o + x * c;
          const int64_t *off = offset.data() + x * kw;
          for (int64_t t = 0; t < count[x]; ++t) {
            const T *p = base + off[t];
            for (int64_t k = 0; k < c; ++k) acc[k] += p[k];
          }
        }
      }
    }
  });
}

void check_pairs(const char *fn, std::initializer_list<const std::vector<int64_t> *> pairs) {
  for (const auto *v : pairs)
    if (v->size() != 2) throw py::value_error(std::string(fn) + ": expected (h, w) pairs");
}

// The (N, OH, OW, C) window at origin (oy0, ox0) of col2im's canvas; throws naming `fn` for
// a window that is not (columns' N, OH >= 1, OW >= 1, columns' C) at a non-negative origin.
void check_col2im_window(const char *fn, const int64_t shape[6],
                         const std::vector<int64_t> &out_shape,
                         const std::vector<int64_t> &origin, const std::vector<int64_t> &stride,
                         const std::vector<int64_t> &dilation, int64_t window[4]) {
  check_pairs(fn, {&origin, &stride, &dilation});
  if (out_shape.size() != 4)
    throw py::value_error(std::string(fn) + ": expected an (N, OH, OW, C) output");
  if (out_shape[0] != shape[0] || out_shape[3] != shape[5] || out_shape[1] < 1 ||
      out_shape[2] < 1 || origin[0] < 0 || origin[1] < 0 || stride[0] < 1 || stride[1] < 1 ||
      dilation[0] < 1 || dilation[1] < 1)
    throw py::value_error(std::string(fn) + ": the output window does not fit the columns");
  window[0] = origin[0], window[1] = origin[1], window[2] = out_shape[1],
  window[3] = out_shape[2];
}

Floats fused_col2im(Floats cols, std::vector<int64_t> out_shape, std::vector<int64_t> origin,
                    std::vector<int64_t> stride, std::vector<int64_t> dilation) {
  if (cols.ndim() != 6) throw py::value_error("fused col2im: expected (N, H, W, KH, KW, C)");
  int64_t shape[6], window[4];
  for (int i = 0; i < 6; ++i) shape[i] = cols.shape(i);
  check_col2im_window("fused col2im", shape, out_shape, origin, stride, dilation, window);
  Floats out({out_shape[0], out_shape[1], out_shape[2], out_shape[3]});
  const float *src = cols.data();
  float *dst = out.mutable_data();
  py::gil_scoped_release release;
  col2im_into(src, shape, window, stride, dilation, dst);
  return out;
}

// The same two kernels over this module's Arrays, for the cpu() device (float32 and float64):
// `a` an (N, H, W, C) view (element strides, offset); `cols` compact (N, H, W, KH, KW, C).
void im2col(const Array &a, Array &out, const std::vector<int64_t> &shape,
            const std::vector<int64_t> &strides, int64_t offset, std::vector<int64_t> kernel,
            std::vector<int64_t> stride, std::vector<int64_t> padding,
            std::vector<int64_t> dilation, std::vector<int64_t> out_size) {
  const char *fn = "im2col";
  if (shape.size() != 4) throw py::value_error("im2col: expected an (N, H, W, C) view");
  check_pairs(fn, {&kernel, &stride, &padding, &dilation, &out_size});
  check_view(a, shape, strides, offset, fn);
  if (a.dtype != out.dtype) throw py::value_error("im2col: a and out differ in dtype");
  check_size(out, shape[0] * out_size[0] * out_size[1] * kernel[0] * kernel[1] * shape[3], fn,
             "out");
  for (int d = 0; d < 2; ++d) {  // every patch must start and end inside the padded input
    const int64_t last = (out_size[d] - 1) * stride[d] + (kernel[d] - 1) * dilation[d];
    if (stride[d] < 1 || dilation[d] < 1 || padding[d] < 0 || kernel[d] < 1 ||
        out_size[d] < 1 || last >= shape[1 + d] + 2 * padding[d])
      throw py::value_error("im2col: kernel, stride, padding, dilation and out_size do not fit "
                            "the input");
  }
  dispatch_float(a.dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t s[4] = {strides[0], strides[1], strides[2], strides[3]};
    py::gil_scoped_release release;
    im2col_into(a.data<T>() + offset, s, shape[0], shape[1], shape[2], shape[3], kernel,
                stride, padding, dilation, out_size, out.data<T>());
  });
}

void col2im(const Array &cols, Array &out, const std::vector<int64_t> &shape,
            std::vector<int64_t> out_shape, std::vector<int64_t> origin,
            std::vector<int64_t> stride, std::vector<int64_t> dilation) {
  const char *fn = "col2im";
  if (shape.size() != 6)
    throw py::value_error("col2im: expected (N, H, W, KH, KW, C) columns");
  if (cols.dtype != out.dtype) throw py::value_error("col2im: cols and out differ in dtype");
  for (int64_t d : shape)
    if (d < 0) throw py::value_error("col2im: negative dimension");
  check_size(cols, size_of(shape), fn, "cols");
  const int64_t s6[6] = {shape[0], shape[1], shape[2], shape[3], shape[4], shape[5]};
  int64_t window[4];
  check_col2im_window(fn, s6, out_shape, origin, stride, dilation, window);
  check_size(out, size_of(out_shape), fn, "out");
  dispatch_float(cols.dtype, fn, [&](auto tag) {
    using T = typename decltype(tag)::type;
    py::gil_scoped_release release;
    col2im_into(cols.data<T>(), s6, window, stride, dilation, out.data<T>());
  });
}

// f(0, size) on the calling thread: over fresh NumPy outputs these one-pass loops measured
// several times slower on the pool's two threads than on one (DCGAN sizes, 2-core machine),
// where im2col and col2im, with far more work per output row, gain from it.
template <class F> void fused_blocks(int64_t size, F &&f) {
  py::gil_scoped_release release;
  f(int64_t(0), size);
}

void check_same_size(const char *name, std::initializer_list<const py::array *> arrays) {
  const py::ssize_t size = (*arrays.begin())->size();
  for (const py::array *a : arrays)
    if (a->size() != size) throw py::value_error(std::string(name) + ": sizes differ");
}

Floats like(const py::array &x) {
  return Floats(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
}

// The one-pass cores, over raw float32 buffers; the fused_* functions below serve them to
// cpu_numpy()'s NumPy arrays, the Array functions further below to cpu()'s buffers.
void leaky_relu_into(const float *__restrict x, float *__restrict out, int64_t n, float slope) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] > 0 ? x[i] : x[i] * slope;
}

void leaky_relu_grad_into(const float *__restrict x, const float *__restrict g,
                          float *__restrict out, int64_t n, float slope) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] > 0 ? g[i] : g[i] * slope;
}

// Adam's update (needle.optim.Adam's composite: decay, moments, bias corrections, step),
// every scalar rounded to float32 first as NumPy does with Python floats.
struct AdamScalars {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, correction1, correction2, decay;
};

void adam_into(const float *__restrict w, const float *__restrict g, const float *__restrict m,
               const float *__restrict v, float *__restrict ow, float *__restrict om,
               float *__restrict ov, int64_t n, const AdamScalars &s) {
  for (int64_t i = 0; i < n; ++i) {
    const float gd = s.decay != 0.0f ? g[i] + w[i] * s.decay : g[i];
    const float mi = m[i] * s.beta1 + gd * s.one_minus_beta1;
    const float vi = v[i] * s.beta2 + (gd * gd) * s.one_minus_beta2;
    om[i] = mi;
    ov[i] = vi;
    ow[i] = w[i] - (mi / s.correction1) * s.lr / (std::sqrt(vi / s.correction2) + s.eps);
  }
}

Floats fused_leaky_relu(Floats x, float slope) {
  Floats y = like(x);
  const float *px = x.data();
  float *out = y.mutable_data();
  fused_blocks(x.size(), [=](int64_t lo, int64_t hi) {
    leaky_relu_into(px + lo, out + lo, hi - lo, slope);
  });
  return y;
}

Floats fused_leaky_relu_grad(Floats x, Floats g, float slope) {
  check_same_size("fused leaky_relu_grad", {&x, &g});
  Floats dx = like(x);
  const float *px = x.data(), *pg = g.data();
  float *out = dx.mutable_data();
  fused_blocks(x.size(), [=](int64_t lo, int64_t hi) {
    leaky_relu_grad_into(px + lo, pg + lo, out + lo, hi - lo, slope);
  });
  return dx;
}

py::tuple fused_adam(Floats w, Floats g, Floats m, Floats v, float lr, float beta1, float beta2,
                     float one_minus_beta1, float one_minus_beta2, float eps,
                     float correction1, float correction2, float decay) {
  check_same_size("fused adam", {&w, &g, &m, &v});
  Floats w_new = like(w), m_new = like(w), v_new = like(w);
  const float *pw = w.data(), *pg = g.data(), *pm = m.data(), *pv = v.data();
  float *ow = w_new.mutable_data(), *om = m_new.mutable_data(), *ov = v_new.mutable_data();
  const AdamScalars s{lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                      correction1, correction2, decay};
  fused_blocks(w.size(), [=](int64_t lo, int64_t hi) {
    adam_into(pw + lo, pg + lo, pm + lo, pv + lo, ow + lo, om + lo, ov + lo, hi - lo, s);
  });
  return py::make_tuple(w_new, m_new, v_new);
}

// BatchNorm's training passes over float32 data seen as (outer, C, inner), C-contiguous: x in
// its memory order with the channel axis where that order has it (NCHW: (N, C, H * W); an NCHW
// view of an NHWC buffer, as the convolutions give: (N * H * W, C, 1)). Unlike the kernels
// above these sum, and in double rather than NumPy's pairwise float32, so they agree with
// the composite (needle.ops.BatchNormalize) to float32 rounding, not bit for bit.

// One channel's run of n contiguous elements: with u = x - c and v = g (HasG) or u, adds
// sum(v) to *s1 and sum(v * u) to *s2, both in double over eight chains (element i goes to
// chain i % 8, the last n % 8 to chain 0; the chains then added in order). The AVX2 variant
// holds the eight chains in two registers each and rounds exactly as the scalar one.
// Element i's terms of the per-channel sums below: u = x[i] - c, v = g[i] (HasG) or u;
// s1 += v, s2 += v * u. Every variant's scalar steps are this one.
template <bool HasG>
NEEDLE_INLINE void add_terms(const float *x, const float *g, int64_t i, double c, double &s1,
                             double &s2) {
  const double u = double(x[i]) - c, v = HasG ? double(g[i]) : u;
  s1 += v, s2 += v * u;
}

template <bool HasG>
void run_sums(Isa<16>, const float *x, const float *g, int64_t n, double c, double *s1,
              double *s2) {
  double a0[8] = {0}, a1[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) add_terms<HasG>(x, g, i + j, c, a0[j], a1[j]);
  for (; i < n; ++i) add_terms<HasG>(x, g, i, c, a0[0], a1[0]);
  for (int j = 0; j < 8; ++j) *s1 += a0[j], *s2 += a1[j];
}

#ifdef NEEDLE_X86_AVX2
// Eight floats at p as doubles: elements 0-3 in lo, 4-7 in hi.
__attribute__((target("avx2"))) inline void widen(const float *p, __m256d &lo, __m256d &hi) {
  const __m256 f = _mm256_loadu_ps(p);
  lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
  hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
}

template <bool HasG>
__attribute__((target("avx2"))) void run_sums(Isa<32>, const float *x, const float *g,
                                              int64_t n, double c, double *s1, double *s2) {
  const __m256d cc = _mm256_set1_pd(c);
  __m256d a0l = _mm256_setzero_pd(), a0h = a0l, a1l = a0l, a1h = a0l;  // chains 0-3, 4-7
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256d ul, uh;
    widen(x + i, ul, uh);
    ul = _mm256_sub_pd(ul, cc), uh = _mm256_sub_pd(uh, cc);
    __m256d vl = ul, vh = uh;
    if (HasG) widen(g + i, vl, vh);
    a0l = _mm256_add_pd(a0l, vl), a0h = _mm256_add_pd(a0h, vh);
    a1l = _mm256_add_pd(a1l, _mm256_mul_pd(vl, ul)), a1h = _mm256_add_pd(a1h, _mm256_mul_pd(vh, uh));
  }
  alignas(32) double a0[8], a1[8];
  _mm256_store_pd(a0, a0l), _mm256_store_pd(a0 + 4, a0h);
  _mm256_store_pd(a1, a1l), _mm256_store_pd(a1 + 4, a1h);
  for (; i < n; ++i) add_terms<HasG>(x, g, i, c, a0[0], a1[0]);
  for (int j = 0; j < 8; ++j) *s1 += a0[j], *s2 += a1[j];
}
#endif

// Rows o0..o1 of x seen as (outer, channels, 1), channels innermost: adds each channel's
// sum(v) and sum(v * u) over those rows to p0[k] and p1[k] (u and v as in run_sums), row by
// row in order. The AVX2 variant keeps eight channels' sums in registers across the rows.
template <bool HasG>
void lane_sums(Isa<16>, const float *x, const float *g, const float *center, int64_t o0,
               int64_t o1, int64_t channels, double *p0, double *p1) {
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t k = 0; k < channels; ++k) {
      const int64_t i = o * channels + k;
      add_terms<HasG>(x, g, i, double(center[k]), p0[k], p1[k]);
    }
}

#ifdef NEEDLE_X86_AVX2
template <bool HasG>
__attribute__((target("avx2"))) void lane_sums(Isa<32>, const float *x, const float *g,
                                               const float *center, int64_t o0, int64_t o1,
                                               int64_t channels, double *p0, double *p1) {
  int64_t k = 0;
  for (; k + 8 <= channels; k += 8) {
    __m256d cl, ch;
    widen(center + k, cl, ch);
    __m256d s0l = _mm256_loadu_pd(p0 + k), s0h = _mm256_loadu_pd(p0 + k + 4);
    __m256d s1l = _mm256_loadu_pd(p1 + k), s1h = _mm256_loadu_pd(p1 + k + 4);
    for (int64_t o = o0; o < o1; ++o) {
      __m256d ul, uh;
      widen(x + o * channels + k, ul, uh);
      ul = _mm256_sub_pd(ul, cl), uh = _mm256_sub_pd(uh, ch);
      __m256d vl = ul, vh = uh;
      if (HasG) widen(g + o * channels + k, vl, vh);
      s0l = _mm256_add_pd(s0l, vl), s0h = _mm256_add_pd(s0h, vh);
      s1l = _mm256_add_pd(s1l, _mm256_mul_pd(vl, ul)), s1h = _mm256_add_pd(s1h, _mm256_mul_pd(vh, uh));
    }
    _mm256_storeu_pd(p0 + k, s0l), _mm256_storeu_pd(p0 + k + 4, s0h);
    _mm256_storeu_pd(p1 + k, s1l), _mm256_storeu_pd(p1 + k + 4, s1h);
  }
  for (; k < channels; ++k)
    for (int64_t o = o0; o < o1; ++o) {
      const int64_t i = o * channels + k;
      add_terms<HasG>(x, g, i, double(center[k]), p0[k], p1[k]);
    }
}
#endif

// out[i] = f(i, k) over rows o0..o1 of (outer, channels, inner), k each element's channel;
// compiled for the baseline ISA and for AVX2 without FMA.
#define NEEDLE_CHANNEL_MAP_ROWS(BYTES, ATTR)                                                   \
  template <class F>                                                                           \
  ATTR void channel_map_rows(Isa<BYTES>, int64_t o0, int64_t o1, int64_t channels,             \
                             int64_t inner, const F &f) {                                      \
    for (int64_t o = o0; o < o1; ++o) {                                                        \
      if (inner == 1) { /* channels innermost: vectorise across them */                        \
        for (int64_t k = 0; k < channels; ++k) f(o * channels + k, k);                         \
        continue;                                                                              \
      }                                                                                        \
      for (int64_t k = 0; k < channels; ++k) {                                                 \
        const int64_t base = (o * channels + k) * inner;                                       \
        for (int64_t i = base; i < base + inner; ++i) f(i, k);                                 \
      }                                                                                        \
    }                                                                                          \
  }
#ifdef NEEDLE_X86_AVX2
#define NEEDLE_FOR_EACH_NOFMA_ISA(DEFINE) DEFINE(16, ) DEFINE(32, __attribute__((target("avx2"))))
#else
#define NEEDLE_FOR_EACH_NOFMA_ISA(DEFINE) DEFINE(16, )
#endif
NEEDLE_FOR_EACH_NOFMA_ISA(NEEDLE_CHANNEL_MAP_ROWS)
#undef NEEDLE_CHANNEL_MAP_ROWS

// fn(Isa<bytes>{}) with the AVX2 variant of the loops above unless the GEMM variant in use
// (set_gemm_isa, NEEDLE_GEMM_ISA) is the baseline one: tests force that to compare the two.
template <class F> void with_nofma_isa(F &&fn) {
#ifdef NEEDLE_X86_AVX2
  if (current_gemm_isa() >= 32) return fn(Isa<32>{});
#endif
  fn(Isa<16>{});
}

// Per-channel double sums of x seen as (outer, channels, inner), with u = x - center[k] and
// v = g (where given) or u: s1[k] = sum(v), s2[k] = sum(v * u) over channel k's elements
// (BatchNorm's moments about a shift, and its gradient's sum(g) and sum(g * (x - mean))). The
// rows are cut into a fixed number of blocks, whatever the thread count, each summed on its
// own and the blocks added in order: the same result on 1 or 8 threads. Each variant is
// written to do the same double operations in the same order (no FMA contraction), so the
// AVX2 and baseline variants round alike.
template <bool HasG>
void block_sums(const float *x, const float *g, const float *center, int64_t o0, int64_t o1,
                int64_t channels, int64_t inner, double *p0, double *p1) {
  with_nofma_isa([&](auto isa) {
    if (inner == 1) return lane_sums<HasG>(isa, x, g, center, o0, o1, channels, p0, p1);
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t k = 0; k < channels; ++k) {
        const int64_t base = (o * channels + k) * inner;
        run_sums<HasG>(isa, x + base, HasG ? g + base : nullptr, inner, double(center[k]),
                       p0 + k, p1 + k);
      }
  });
}

void channel_sums(const float *x, const float *g, const float *center, int64_t outer,
                  int64_t channels, int64_t inner, double *s1, double *s2) {
  const int64_t blocks = std::min<int64_t>(outer, 16);
  std::vector<double> partial(size_t(blocks) * 2 * channels, 0.0);
  parallel_for(blocks, (outer / std::max<int64_t>(blocks, 1)) * channels * inner,
               [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double *p0 = partial.data() + b * 2 * channels, *p1 = p0 + channels;
      const int64_t o0 = outer * b / blocks, o1 = outer * (b + 1) / blocks;
      if (g)
        block_sums<true>(x, g, center, o0, o1, channels, inner, p0, p1);
      else
        block_sums<false>(x, g, center, o0, o1, channels, inner, p0, p1);
    }
  });
  std::fill(s1, s1 + channels, 0.0);
  std::fill(s2, s2 + channels, 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t k = 0; k < channels; ++k) {
      s1[k] += partial[(b * 2) * channels + k];
      s2[k] += partial[(b * 2 + 1) * channels + k];
    }
}

// out[i] = f(i, k) over every element, k its channel, on the pool: unlike fused_blocks' loops
// these measured faster on two threads (DCGAN's (64 * 14 * 14, 128, 1): batch_norm_grad 0.92
// -> 0.78 ms, batch_norm 0.59 -> 0.56), their work per element being a few operations more.
template <class F> void channel_map(int64_t outer, int64_t channels, int64_t inner, F &&f) {
  parallel_for(outer, channels * inner, [&](int64_t o0, int64_t o1) {
    with_nofma_isa([&](auto isa) { channel_map_rows(isa, o0, o1, channels, inner, f); });
  });
}

void check_batch_norm(const char *name, const Floats &x,
                      std::initializer_list<const Floats *> vectors) {
  if (x.ndim() != 3 || x.shape(0) * x.shape(2) == 0)
    throw py::value_error(std::string(name) + ": expected a non-empty (outer, C, inner) array");
  for (const Floats *v : vectors)
    if (v->ndim() != 1 || v->shape(0) != x.shape(1))
      throw py::value_error(std::string(name) + ": expected (C,) vectors");
}

// y = (x - mean) * (inv_std * weight) + bias with the batch's mean and biased variance per
// channel of x seen as (outer, c, inner): one pass for the moments, one for y. The moments are
// taken about each channel's first element, so E[d^2] - E[d]^2 does not cancel where the mean
// is large against the spread. mean, var and inv_std get the float32 of the double results.
void batch_norm_into(const float *x, int64_t outer, int64_t c, int64_t inner,
                     const float *weight, const float *bias, double eps, float *y, float *mean,
                     float *var, float *inv_std) {
  std::vector<float> shift(c), scale(c);
  for (int64_t k = 0; k < c; ++k) shift[k] = x[k * inner];
  std::vector<double> s1(c), s2(c);
  channel_sums(x, nullptr, shift.data(), outer, c, inner, s1.data(), s2.data());
  const double n = double(outer) * double(inner);
  for (int64_t k = 0; k < c; ++k) {
    const double d = s1[k] / n, v = std::max(s2[k] / n - d * d, 0.0);
    mean[k] = float(double(shift[k]) + d);
    var[k] = float(v);
    inv_std[k] = float(1.0 / std::sqrt(v + eps));
    scale[k] = inv_std[k] * weight[k];
  }
  const float *ps = scale.data();
  channel_map(outer, c, inner, [=](int64_t i, int64_t k) {
    y[i] = (x[i] - mean[k]) * ps[k] + bias[k];
  });
}

// The gradients of batch_norm_into's y for an output gradient g, with x_hat = (x - mean) *
// inv_std (the forward's float32 statistics) and sums over each channel's n elements:
//   gbias = sum(g), gweight = sum(g * x_hat),
//   gx = weight * inv_std * (g - gbias / n - x_hat * gweight / n).
// One pass for the two sums, one for gx.
void batch_norm_grad_into(const float *x, const float *g, int64_t outer, int64_t c,
                          int64_t inner, const float *weight, const float *mean,
                          const float *inv_std, float *gx, float *gweight, float *gbias) {
  std::vector<double> sg(c), sgd(c);
  channel_sums(x, g, mean, outer, c, inner, sg.data(), sgd.data());
  const double n = double(outer) * double(inner);
  std::vector<float> g_mean(c), slope(c), scale(c);
  for (int64_t k = 0; k < c; ++k) {
    const double gw = sgd[k] * inv_std[k];
    gbias[k] = float(sg[k]);
    gweight[k] = float(gw);
    g_mean[k] = float(sg[k] / n);
    slope[k] = float(gw / n * inv_std[k]);  // x_hat * gweight / n = (x - mean) * slope
    scale[k] = inv_std[k] * weight[k];
  }
  const float *gm = g_mean.data(), *sl = slope.data(), *sc = scale.data();
  channel_map(outer, c, inner, [=](int64_t i, int64_t k) {
    gx[i] = (g[i] - gm[k] - (x[i] - mean[k]) * sl[k]) * sc[k];
  });
}

// Returns (y, mean, var, inv_std).
py::tuple fused_batch_norm(Floats x, Floats weight, Floats bias, double eps) {
  check_batch_norm("fused batch_norm", x, {&weight, &bias});
  const int64_t outer = x.shape(0), c = x.shape(1), inner = x.shape(2);
  Floats y = like(x), mean({c}), var({c}), inv_std({c});
  const float *px = x.data(), *pw = weight.data(), *pb = bias.data();
  float *py = y.mutable_data(), *pm = mean.mutable_data(), *pv = var.mutable_data(),
        *pi = inv_std.mutable_data();
  {
    py::gil_scoped_release release;
    batch_norm_into(px, outer, c, inner, pw, pb, eps, py, pm, pv, pi);
  }
  return py::make_tuple(y, mean, var, inv_std);
}

// Returns (gx, gweight, gbias).
py::tuple fused_batch_norm_grad(Floats x, Floats g, Floats weight, Floats mean, Floats inv_std) {
  check_batch_norm("fused batch_norm_grad", x, {&weight, &mean, &inv_std});
  check_same_size("fused batch_norm_grad", {&x, &g});
  const int64_t outer = x.shape(0), c = x.shape(1), inner = x.shape(2);
  Floats gx = like(x), gweight({c}), gbias({c});
  const float *px = x.data(), *pg = g.data(), *pm = mean.data(), *pi = inv_std.data(),
              *pw = weight.data();
  float *out = gx.mutable_data(), *pgw = gweight.mutable_data(), *pgb = gbias.mutable_data();
  {
    py::gil_scoped_release release;
    batch_norm_grad_into(px, pg, outer, c, inner, pw, pm, pi, out, pgw, pgb);
  }
  return py::make_tuple(gx, gweight, gbias);
}

// The same kernels over this module's float32 Arrays, for the cpu() device: whole buffers in
// the caller's chosen element order (needle/backend_ndarray/fused_native.py), outputs given.
const float *floats_of(const Array &a, int64_t size, const char *fn, const char *what) {
  if (a.dtype != DType::Float32)
    throw py::value_error(std::string(fn) + ": " + what + " must be float32, got " +
                          info(a.dtype).name);
  if (static_cast<int64_t>(a.size) != size)
    throw py::value_error(std::string(fn) + ": " + what + " holds " + std::to_string(a.size) +
                          " elements, expected " + std::to_string(size));
  return a.data<float>();
}

float *floats_of(Array &a, int64_t size, const char *fn, const char *what) {
  return const_cast<float *>(floats_of(static_cast<const Array &>(a), size, fn, what));
}

void leaky_relu(const Array &x, Array &out, float slope) {
  const int64_t n = static_cast<int64_t>(x.size);
  const float *px = floats_of(x, n, "leaky_relu", "x");
  float *po = floats_of(out, n, "leaky_relu", "out");
  py::gil_scoped_release release;
  leaky_relu_into(px, po, n, slope);
}

void leaky_relu_grad(const Array &x, const Array &g, Array &out, float slope) {
  const int64_t n = static_cast<int64_t>(x.size);
  const char *fn = "leaky_relu_grad";
  const float *px = floats_of(x, n, fn, "x"), *pg = floats_of(g, n, fn, "g");
  float *po = floats_of(out, n, fn, "out");
  py::gil_scoped_release release;
  leaky_relu_grad_into(px, pg, po, n, slope);
}

void adam(const Array &w, const Array &g, const Array &m, const Array &v, Array &w_out,
          Array &m_out, Array &v_out, float lr, float beta1, float beta2, float one_minus_beta1,
          float one_minus_beta2, float eps, float correction1, float correction2, float decay) {
  const int64_t n = static_cast<int64_t>(w.size);
  const char *fn = "adam";
  const float *pw = floats_of(w, n, fn, "w"), *pg = floats_of(g, n, fn, "g"),
              *pm = floats_of(m, n, fn, "m"), *pv = floats_of(v, n, fn, "v");
  float *ow = floats_of(w_out, n, fn, "w_out"), *om = floats_of(m_out, n, fn, "m_out"),
        *ov = floats_of(v_out, n, fn, "v_out");
  const AdamScalars s{lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                      correction1, correction2, decay};
  py::gil_scoped_release release;
  adam_into(pw, pg, pm, pv, ow, om, ov, n, s);
}

void check_channels(const char *fn, int64_t outer, int64_t c, int64_t inner) {
  if (outer < 1 || c < 1 || inner < 1)
    throw py::value_error(std::string(fn) + ": expected a non-empty (outer, C, inner) layout");
}

void batch_norm(const Array &x, const Array &weight, const Array &bias, Array &y, Array &mean,
                Array &var, Array &inv_std, int64_t outer, int64_t c, int64_t inner,
                double eps) {
  const char *fn = "batch_norm";
  check_channels(fn, outer, c, inner);
  const int64_t n = outer * c * inner;
  const float *px = floats_of(x, n, fn, "x"), *pw = floats_of(weight, c, fn, "weight"),
              *pb = floats_of(bias, c, fn, "bias");
  float *py = floats_of(y, n, fn, "y"), *pm = floats_of(mean, c, fn, "mean"),
        *pv = floats_of(var, c, fn, "var"), *pi = floats_of(inv_std, c, fn, "inv_std");
  py::gil_scoped_release release;
  batch_norm_into(px, outer, c, inner, pw, pb, eps, py, pm, pv, pi);
}

void batch_norm_grad(const Array &x, const Array &g, const Array &weight, const Array &mean,
                     const Array &inv_std, Array &gx, Array &gweight, Array &gbias,
                     int64_t outer, int64_t c, int64_t inner) {
  const char *fn = "batch_norm_grad";
  check_channels(fn, outer, c, inner);
  const int64_t n = outer * c * inner;
  const float *px = floats_of(x, n, fn, "x"), *pg = floats_of(g, n, fn, "g"),
              *pw = floats_of(weight, c, fn, "weight"), *pm = floats_of(mean, c, fn, "mean"),
              *pi = floats_of(inv_std, c, fn, "inv_std");
  float *ogx = floats_of(gx, n, fn, "gx"), *ogw = floats_of(gweight, c, fn, "gweight"),
        *ogb = floats_of(gbias, c, fn, "gbias");
  py::gil_scoped_release release;
  batch_norm_grad_into(px, pg, outer, c, inner, pw, pm, pi, ogx, ogw, ogb);
}

}  // namespace cpu
}  // namespace needle

PYBIND11_MODULE(ndarray_backend_cpu, m) {
  using namespace needle::cpu;
  m.doc() = "needle's native CPU backend: the course's flat-memory interface in C++";
  m.attr("__device_name__") = "cpu";
  m.attr("__tile_size__") = kTileSize;
  m.def("num_threads", &num_threads, "Threads the kernels use (NEEDLE_NUM_THREADS, "
        "else OMP_NUM_THREADS, else the CPUs available)");
  m.def("set_num_threads", &set_num_threads, py::arg("threads"));
  m.attr("__avx2__") = cpu_has_avx2();  // whether the AVX2 + FMA kernels run here
  m.attr("__avx512__") = cpu_has_avx512();  // whether the AVX-512 GEMM can run here
  m.def("gemm_isa", &gemm_isa, "The GEMM variant matmul uses: avx512, avx2 or baseline");
  m.def("set_gemm_isa", &set_gemm_isa, py::arg("name"),
        "Pick the GEMM variant: auto (the widest the CPU has, the default), avx512, avx2 or "
        "baseline; NEEDLE_GEMM_ISA sets the starting choice");
  m.def("fused_im2col", &fused_im2col, py::arg("x"), py::arg("kernel"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("out_size"));
  m.def("fused_col2im", &fused_col2im, py::arg("cols"), py::arg("out_shape"),
        py::arg("origin"), py::arg("stride"), py::arg("dilation"));
  m.def("im2col", &im2col, py::arg("a"), py::arg("out"), py::arg("shape"), py::arg("strides"),
        py::arg("offset"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("out_size"),
        "out (N*OH*OW, KH*KW*C) = the patches of the (N, H, W, C) view of a, padding as zeros");
  m.def("col2im", &col2im, py::arg("cols"), py::arg("out"), py::arg("shape"),
        py::arg("out_shape"), py::arg("origin"), py::arg("stride"), py::arg("dilation"),
        "out (N, OH, OW, C) = the window at origin (y, x) of the scatter-add of compact "
        "(N, H, W, KH, KW, C) columns, summed in kernel-offset order");
  m.def("fused_leaky_relu", &fused_leaky_relu, py::arg("x"), py::arg("slope"));
  m.def("fused_leaky_relu_grad", &fused_leaky_relu_grad, py::arg("x"), py::arg("g"),
        py::arg("slope"));
  m.def("fused_adam", &fused_adam, py::arg("w"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("one_minus_beta1"),
        py::arg("one_minus_beta2"), py::arg("eps"), py::arg("correction1"),
        py::arg("correction2"), py::arg("decay"));
  m.def("fused_batch_norm", &fused_batch_norm, py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("eps"));
  m.def("fused_batch_norm_grad", &fused_batch_norm_grad, py::arg("x"), py::arg("g"),
        py::arg("weight"), py::arg("mean"), py::arg("inv_std"));
  m.def("leaky_relu", &leaky_relu, py::arg("x"), py::arg("out"), py::arg("slope"),
        "out = x > 0 ? x : slope * x over whole float32 buffers");
  m.def("leaky_relu_grad", &leaky_relu_grad, py::arg("x"), py::arg("g"), py::arg("out"),
        py::arg("slope"), "out = x > 0 ? g : slope * g over whole float32 buffers");
  m.def("adam", &adam, py::arg("w"), py::arg("g"), py::arg("m"), py::arg("v"),
        py::arg("w_out"), py::arg("m_out"), py::arg("v_out"), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("one_minus_beta1"), py::arg("one_minus_beta2"),
        py::arg("eps"), py::arg("correction1"), py::arg("correction2"), py::arg("decay"),
        "needle.optim.Adam's update of whole float32 buffers into the three outputs");
  m.def("batch_norm", &batch_norm, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("y"), py::arg("mean"), py::arg("var"), py::arg("inv_std"), py::arg("outer"),
        py::arg("channels"), py::arg("inner"), py::arg("eps"),
        "BatchNorm's training forward over x seen as (outer, channels, inner)");
  m.def("batch_norm_grad", &batch_norm_grad, py::arg("x"), py::arg("g"), py::arg("weight"),
        py::arg("mean"), py::arg("inv_std"), py::arg("gx"), py::arg("gweight"),
        py::arg("gbias"), py::arg("outer"), py::arg("channels"), py::arg("inner"),
        "batch_norm's gradients for the output gradient g");

  py::class_<Array>(m, "Array")
      .def(py::init([](size_t size, py::handle dtype) {
             return new Array(size, parse_dtype(dtype));
           }),
           py::arg("size"), py::arg("dtype") = "float32")
      .def_property_readonly("size", [](const Array &a) { return a.size; })
      .def_property_readonly("dtype", [](const Array &a) { return info(a.dtype).name; })
      .def("ptr", [](const Array &a) { return reinterpret_cast<uintptr_t>(a.ptr); })
      .def("__repr__", [](const Array &a) {
        return "Array(" + std::to_string(a.size) + ", dtype=" + info(a.dtype).name + ")";
      });

  m.def("to_numpy", &to_numpy, py::arg("a"), py::arg("shape"), py::arg("strides"),
        py::arg("offset"));
  m.def("from_numpy", &from_numpy, py::arg("a"), py::arg("out"));
  m.def("fill", &fill, py::arg("out"), py::arg("val"));
  m.def("compact", &compact, py::arg("a"), py::arg("out"), py::arg("shape"), py::arg("strides"),
        py::arg("offset"));
  m.def("ewise_setitem", &ewise_setitem, py::arg("a"), py::arg("out"), py::arg("shape"),
        py::arg("strides"), py::arg("offset"));
  m.def("scalar_setitem", &scalar_setitem, py::arg("size"), py::arg("val"), py::arg("out"),
        py::arg("shape"), py::arg("strides"), py::arg("offset"));

#define NEEDLE_BINARY(name, Op, float_only)                                          \
  m.def("ewise_" #name, [](const Array &a, const Array &b, Array &out) {             \
    ewise_arith<Op, float_only>(a, b, out, "ewise_" #name);                          \
  }, py::arg("a"), py::arg("b"), py::arg("out"));                                    \
  m.def("scalar_" #name, [](const Array &a, py::handle val, Array &out) {            \
    scalar_arith<Op, float_only>(a, val, out, "scalar_" #name);                      \
  }, py::arg("a"), py::arg("val"), py::arg("out"));
  NEEDLE_BINARY(add, AddOp, false)
  NEEDLE_BINARY(mul, MulOp, false)
  NEEDLE_BINARY(div, DivOp, true)
  NEEDLE_BINARY(maximum, MaxOp, false)
#undef NEEDLE_BINARY

#define NEEDLE_COMPARE(name, Op)                                                      \
  m.def("ewise_" #name, [](const Array &a, const Array &b, Array &out) {              \
    ewise_compare<Op>(a, b, out, "ewise_" #name);                                     \
  }, py::arg("a"), py::arg("b"), py::arg("out"));                                     \
  m.def("scalar_" #name, [](const Array &a, py::handle val, Array &out) {             \
    scalar_compare<Op>(a, val, out, "scalar_" #name);                                 \
  }, py::arg("a"), py::arg("val"), py::arg("out"));
  NEEDLE_COMPARE(eq, EqOp)
  NEEDLE_COMPARE(ge, GeOp)
#undef NEEDLE_COMPARE

  m.def("ewise_power", [](const Array &a, const Array &b, Array &out) {
    ewise_arith<PowOp, true>(a, b, out, "ewise_power");
  }, py::arg("a"), py::arg("b"), py::arg("out"));
  m.def("scalar_power", &scalar_power, py::arg("a"), py::arg("val"), py::arg("out"));
  m.def("ewise_log",
        [](const Array &a, Array &out) { ewise_unary(a, out, Unary::Log, "ewise_log"); },
        py::arg("a"), py::arg("out"));
  m.def("ewise_exp",
        [](const Array &a, Array &out) { ewise_unary(a, out, Unary::Exp, "ewise_exp"); },
        py::arg("a"), py::arg("out"));
  m.def("ewise_tanh",
        [](const Array &a, Array &out) { ewise_unary(a, out, Unary::Tanh, "ewise_tanh"); },
        py::arg("a"), py::arg("out"));

  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("m"),
        py::arg("n"), py::arg("p"));
  m.def("matmul_strided", &matmul_strided, py::arg("a"), py::arg("b"), py::arg("out"),
        py::arg("m"), py::arg("n"), py::arg("p"), py::arg("a_strides"), py::arg("a_offset"),
        py::arg("b_strides"), py::arg("b_offset"),
        "out (m x p, compact) = A @ B over strided (m, n) and (n, p) views of a and b, read in "
        "place when row-major or transposed (bit for bit matmul of their compacted copies)");
  m.def("matmul_tiled", &matmul_tiled, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("m"),
        py::arg("n"), py::arg("p"));
  m.def("reduce_max", [](const Array &a, Array &out, int64_t size) {
    reduce<true>(a, out, size, "reduce_max");
  }, py::arg("a"), py::arg("out"), py::arg("reduce_size"));
  m.def("reduce_sum", [](const Array &a, Array &out, int64_t size) {
    reduce<false>(a, out, size, "reduce_sum");
  }, py::arg("a"), py::arg("out"), py::arg("reduce_size"));
}
