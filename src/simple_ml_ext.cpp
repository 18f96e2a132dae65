// hw0's C++ softmax regression epoch, exposed to Python as simple_ml_ext.
//
// Build (from the repository root; see docs/course.md):
//   cmake -S . -B build && cmake --build build
// which writes src/simple_ml_ext*.so next to src/simple_ml.py.
//
// Python signature (the course's): softmax_regression_epoch_cpp(X, y, theta, lr, batch)
//   X     float32 (m, n)   inputs
//   y     uint8   (m,)     labels in [0, k)
//   theta float32 (n, k)   C-contiguous and writeable: updated in place
// Minibatches are taken in order, without shuffling; a short final batch is averaged over
// its own size, like the NumPy version in simple_ml.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace py = pybind11;

// One epoch over row-major X (m x n), labels y (m), theta (n x k), updated in place.
void softmax_regression_epoch_cpp(const float *X, const unsigned char *y, float *theta,
                                  size_t m, size_t n, size_t k, float lr, size_t batch) {
    // softmax(X_b theta) - I_y for one minibatch, row-major (rows x k)
    std::vector<float> probs(std::min(batch, m) * k);
    std::vector<float> grad(n * k);
    for (size_t start = 0; start < m; start += batch) {
        const size_t rows = std::min(batch, m - start);
        const float *Xb = X + start * n;
        // logits = Xb theta, then a max-shifted softmax per row.
        for (size_t i = 0; i < rows; ++i) {
            float *row = &probs[i * k];
            std::fill(row, row + k, 0.0f);
            for (size_t p = 0; p < n; ++p) {
                const float x = Xb[i * n + p];
                const float *theta_row = theta + p * k;
                for (size_t j = 0; j < k; ++j) row[j] += x * theta_row[j];
            }
            const float shift = *std::max_element(row, row + k);
            float total = 0.0f;
            for (size_t j = 0; j < k; ++j) {
                row[j] = std::exp(row[j] - shift);
                total += row[j];
            }
            for (size_t j = 0; j < k; ++j) row[j] /= total;
            row[y[start + i]] -= 1.0f;
        }
        // grad = Xb^T (Z - I_y) / rows
        std::fill(grad.begin(), grad.end(), 0.0f);
        for (size_t i = 0; i < rows; ++i) {
            const float *row = &probs[i * k];
            for (size_t p = 0; p < n; ++p) {
                const float x = Xb[i * n + p];
                float *grad_row = &grad[p * k];
                for (size_t j = 0; j < k; ++j) grad_row[j] += x * row[j];
            }
        }
        const float scale = lr / static_cast<float>(rows);
        for (size_t idx = 0; idx < n * k; ++idx) theta[idx] -= scale * grad[idx];
    }
}

namespace {

std::string shape_of(const py::array &a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        if (d) s += ", ";
        s += std::to_string(a.shape(d));
    }
    return s + (a.ndim() == 1 ? ",)" : ")");
}

}  // namespace

PYBIND11_MODULE(simple_ml_ext, m) {
    m.doc() = "hw0: softmax regression epoch in C++ (in-place update of theta)";
    m.def(
        "softmax_regression_epoch_cpp",
        // X and y may be copied into contiguous buffers (they are only read), but theta is
        // taken as a plain array and checked: a silent converting copy would lose the update.
        [](py::array_t<float, py::array::c_style> X,
           py::array_t<unsigned char, py::array::c_style> y, py::array theta, float lr,
           int batch) {
            const char *name = "softmax_regression_epoch_cpp";
            if (X.ndim() != 2)
                throw py::value_error(std::string(name) + ": X must be 2-D (m, n), got shape " +
                                      shape_of(X));
            if (y.ndim() != 1 || y.shape(0) != X.shape(0))
                throw py::value_error(std::string(name) + ": y must have shape (" +
                                      std::to_string(X.shape(0)) + ",), got " + shape_of(y));
            if (!py::isinstance<py::array_t<float>>(theta) ||
                !(theta.flags() & py::array::c_style) || !theta.writeable())
                throw py::type_error(std::string(name) +
                                     ": theta must be a writeable C-contiguous float32 array "
                                     "(it is updated in place)");
            if (theta.ndim() != 2 || theta.shape(0) != X.shape(1))
                throw py::value_error(std::string(name) + ": theta must have shape (" +
                                      std::to_string(X.shape(1)) + ", k), got " +
                                      shape_of(theta));
            if (batch < 1)
                throw py::value_error(std::string(name) + ": batch must be >= 1");
            const size_t m_rows = X.shape(0), n = X.shape(1), k = theta.shape(1);
            const unsigned char *labels = y.data();
            for (size_t i = 0; i < m_rows; ++i)
                if (labels[i] >= k)
                    throw py::value_error(std::string(name) + ": label " +
                                          std::to_string(labels[i]) + " at index " +
                                          std::to_string(i) + " is out of range for k = " +
                                          std::to_string(k));
            float *theta_data = static_cast<float *>(theta.mutable_data());
            py::gil_scoped_release release;
            softmax_regression_epoch_cpp(X.data(), labels, theta_data, m_rows, n, k, lr,
                                         static_cast<size_t>(batch));
        },
        py::arg("X"), py::arg("y"), py::arg("theta"), py::arg("lr"), py::arg("batch"),
        "One epoch of minibatch SGD for softmax regression; updates theta in place.");
}
