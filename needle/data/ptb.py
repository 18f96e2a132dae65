"""Penn Treebank language-model data (COURSE_API.md section 8, hw4).

`data/ptb/` holds `train.txt` and `test.txt`: one sentence per line, words separated by
spaces. `Corpus` turns them into lists of word ids (each line ends with "<eos>"), `batchify`
cuts a list into `batch_size` parallel streams, and `get_batch` takes a (bptt, batch_size)
window of inputs and the next-token targets.

    corpus = Corpus("data/ptb", max_lines=20)
    data = batchify(corpus.train, batch_size=16, device=ndl.cpu(), dtype="float32")
    X, y = get_batch(data, 0, bptt=10, device=ndl.cpu())   # X (10, 16), y (160,)
"""
import os

import numpy as np

from ..autograd import Tensor

__all__ = ["Dictionary", "Corpus", "batchify", "get_batch"]

EOS = "<eos>"


class Dictionary:
    """Word <-> id tables; ids are given out in order of first appearance, from 0."""

    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        """The id of `word`, adding it first if it is new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    """`train` and `test` id lists from base_dir/train.txt and base_dir/test.txt.

    train.txt is read first, so its words get the lowest ids; both share `dictionary`.
    `max_lines` caps the lines read from each file (None: all).
    """

    def __init__(self, base_dir, max_lines=None):
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(base_dir, "train.txt"), max_lines)
        self.test = self.tokenize(os.path.join(base_dir, "test.txt"), max_lines)

    def tokenize(self, path, max_lines=None):
        """Ids of the words of the first `max_lines` lines of `path`, "<eos>" after each line.

        Words are whitespace-separated; every word (and "<eos>") is added to the dictionary.
        """
        ids = []
        with open(path, encoding="utf-8") as f:
            for count, line in enumerate(f):
                if max_lines is not None and count >= max_lines:
                    break
                ids.extend(self.dictionary.add_word(word) for word in line.split() + [EOS])
        return ids


def batchify(data, batch_size, device=None, dtype=None):
    """A NumPy array (nbatch, batch_size): `batch_size` consecutive streams side by side.

    nbatch = len(data) // batch_size; the remainder is dropped. Column j holds
    data[j * nbatch:(j + 1) * nbatch] (column-major), e.g. the alphabet with batch_size 4
    gives columns a..f, g..l, m..r, s..x. `dtype` (e.g. "float32") converts the ids; `device`
    is accepted for the course's signature: the result stays on the host until get_batch.
    """
    nbatch = len(data) // batch_size
    if nbatch == 0:
        raise ValueError(f"batchify: {len(data)} tokens are too few for batch_size "
                         f"{batch_size}")
    array = np.asarray(data[:nbatch * batch_size])
    if dtype is not None:
        array = array.astype(dtype)
    return np.ascontiguousarray(array.reshape(batch_size, nbatch).T)


def get_batch(batches, i, bptt, device=None, dtype=None):
    """(X, y) for rows i .. i + seq_len of `batches`, seq_len = min(bptt, len(batches) - 1 - i).

    X is (seq_len, batch_size): the inputs; y is (seq_len * batch_size,): the same window one
    row later (each position's next token), flattened row by row to match a language model's
    (T * B, vocab) logits. Both are constant Tensors on `device` with `dtype` (float32 when
    None, as the course's tests expect).
    """
    seq_len = min(bptt, len(batches) - 1 - i)
    if seq_len < 1:
        raise ValueError(f"get_batch: no target after row {i} (batches has {len(batches)} "
                         f"rows)")
    dtype = "float32" if dtype is None else dtype
    inputs = batches[i:i + seq_len]
    targets = batches[i + 1:i + 1 + seq_len].reshape(-1)
    return (Tensor(inputs, device=device, dtype=dtype, requires_grad=False),
            Tensor(targets, device=device, dtype=dtype, requires_grad=False))
