#!/usr/bin/env python3
"""Compares an importance matrix written by `huarizo imatrix` with llama.cpp's own
collection of the same statistics (keep it out of CI).

llama-cpp-python does not ship llama-imatrix, so this script does what its
`collect_imatrix` does through the same hook: a `cb_eval` callback on the context sees
every MUL_MAT whose weight is a `blk.*` tensor and whose input has at least 16 rows, and
adds the column-wise squares of the f32 input, row by row in f32, to that weight's sums.
The chunks are llama-imatrix's (BOS per the model's flag, every position with logits).

    huarizo imatrix -m ~/.cache/huarizo/testdata/smollm2.gguf --text tests/quality/lighthouse.txt \\
        --ctx 256 -o /tmp/smollm2.imatrix.gguf
    PYTHONPATH=$LLAMA_CPP/gguf-py:/work/llvenv/lib/python3.11/site-packages python \\
        scripts/ref_imatrix.py ~/.cache/huarizo/testdata/smollm2.gguf \\
        tests/quality/lighthouse.txt 256 /tmp/smollm2.imatrix.gguf [CHUNKS]

It prints, per tensor kind, the largest relative difference of in_sum2 and whether the
counts agree. Flash attention is off, as in huarizo. Measured on SmolLM2-135M Q4_1 over
tests/quality/lighthouse.txt at ctx 256 (3 chunks): all 210 in_sum2 tensors bit-identical,
counts equal (768).
"""
import ctypes
import sys
from collections import defaultdict

import gguf
import llama_cpp
import numpy as np

GGML_OP_MUL_MAT = 29  # position in enum ggml_op of the vendored ggml.h
GGML_TYPE_F32 = 0


class GgmlTensor(ctypes.Structure):
    pass


GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * 4),
    ("nb", ctypes.c_size_t * 4),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GgmlTensor) * 10),
    ("view_src", ctypes.POINTER(GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * 64),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]

sums = {}
counts = defaultdict(int)


def weight_name(t):
    name = t.name.decode()
    return name.split("#")[1] if "#" in name else name


def callback(ptr, ask, _user):
    t = ctypes.cast(ptr, ctypes.POINTER(GgmlTensor)).contents
    if t.op != GGML_OP_MUL_MAT:
        return not ask
    src0, src1 = t.src[0].contents, t.src[1].contents
    name = weight_name(src0)
    if ask:
        return src1.ne[1] >= 16 and src1.type == GGML_TYPE_F32 and name.startswith("blk.")
    ne0 = src1.ne[0]
    acc = sums.setdefault(name, np.zeros(ne0, dtype=np.float32))
    for i3 in range(src1.ne[3]):
        for i2 in range(src1.ne[2]):
            for row in range(src1.ne[1]):
                addr = src1.data + row * src1.nb[1] + i2 * src1.nb[2] + i3 * src1.nb[3]
                x = np.ctypeslib.as_array((ctypes.c_float * ne0).from_address(addr))
                acc += x * x
            counts[name] += src1.ne[1]
    return True


def main():
    model_path, text_path, ctx, ours = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    max_chunks = int(sys.argv[5]) if len(sys.argv) > 5 else None  # huarizo's --chunks
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), llama_cpp.llama_model_default_params())
    vocab = llama_cpp.llama_model_get_vocab(model)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = ctx
    cp.n_threads = cp.n_threads_batch = 2
    cp.flash_attn_type = 0  # disabled, as huarizo (and Llama(flash_attn=False)) computes attention
    cb = llama_cpp.ggml_backend_sched_eval_callback(callback)
    cp.cb_eval = cb
    lctx = llama_cpp.llama_init_from_model(model, cp)

    text = open(text_path, "rb").read()
    buf = (llama_cpp.llama_token * (len(text) + 16))()
    n = llama_cpp.llama_tokenize(vocab, text, len(text), buf, len(buf), True, False)
    tokens = list(buf[:n])
    add_bos = llama_cpp.llama_vocab_get_add_bos(vocab)
    bos = llama_cpp.llama_vocab_bos(vocab)
    n_chunk = len(tokens) // ctx
    if max_chunks is not None:
        n_chunk = min(n_chunk, max_chunks)
    batch = llama_cpp.llama_batch_init(ctx, 0, 1)
    for c in range(n_chunk):
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(lctx), True)
        chunk = tokens[c * ctx:(c + 1) * ctx]
        if add_bos:
            chunk[0] = bos
        batch.n_tokens = ctx
        for i, tok in enumerate(chunk):
            batch.token[i] = tok
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1
        assert llama_cpp.llama_decode(lctx, batch) == 0
        print(f"chunk {c + 1}/{n_chunk}", file=sys.stderr)

    reader = gguf.GGUFReader(ours)
    theirs = {t.name: np.array(t.data, dtype=np.float32).ravel() for t in reader.tensors}
    worst = defaultdict(float)
    missing = sorted(set(sums) - {k[:-len(".in_sum2")] for k in theirs if k.endswith(".in_sum2")})
    exact = 0
    for name, acc in sorted(sums.items()):
        got = theirs.get(name + ".in_sum2")
        if got is None:
            continue
        assert theirs[name + ".counts"][0] == counts[name], (name, theirs[name + ".counts"], counts[name])
        rel = float(np.max(np.abs(got - acc) / np.maximum(np.abs(acc), 1e-30)))
        kind = name.split(".")[2]
        worst[kind] = max(worst[kind], rel)
        if rel > 1e-6:
            print(f"  {name}: max relative difference {rel:.3g}", file=sys.stderr)
        exact += int(np.array_equal(got, acc))
    print(f"llama.cpp collected {len(sums)} matrices; huarizo's file has {len(theirs) // 2}; "
          f"missing from huarizo: {missing}")
    print(f"bit-identical in_sum2: {exact}/{len(sums)}; counts agree")
    for kind, rel in sorted(worst.items()):
        print(f"  {kind:12s} max relative difference {rel:.3g}")


if __name__ == "__main__":
    main()
