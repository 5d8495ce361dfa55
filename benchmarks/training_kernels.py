"""The training kernels of ``electra_tf.models.kernels`` against the plain TensorFlow ops they replace.

Shapes of one ELECTRA-Small step at batch 32 × seq 128: the discriminator's GELU input
[32, 128, 1024], its attention probabilities [32, 4, 128, 128] (dropout), and the generator's
logits at the masked positions [32, 19, 30522] (Gumbel noise). GELU and dropout are timed
forward + backward; sampling is forward only (it has no gradient). Each time is the median of
``--repeats`` calls, after a warm-up.

Usage:
  python benchmarks/training_kernels.py [--repeats 20] [--output benchmarks/results/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", default=os.path.join(RESULTS, "training_kernels_cpu.json"))
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from electra_tf.models import kernels

    def forward_backward(fn, x):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x)
            return tape.gradient(y, x, output_gradients=tf.ones_like(y) * 0.5)
        return lambda: step().numpy()

    def forward(fn):
        step = tf.function(fn)
        return lambda: step().numpy()

    seed = tf.constant([1, 2], tf.int64)  # a tensor: constant folding would skip the RNG
    key = kernels.seed_key(seed)
    hidden = tf.random.stateless_normal([32, 128, 1024], seed=[1, 2])
    probs = tf.nn.softmax(tf.random.stateless_normal([32, 4, 128, 128], seed=[3, 4]))
    logits = tf.random.stateless_normal([32, 19, 30522], seed=[5, 6])
    seeds = tf.stack([tf.fill([32], tf.constant(7, tf.int64)), tf.range(32, dtype=tf.int64)], 1)

    def philox_gumbel():
        u = tf.map_fn(lambda s: tf.random.stateless_uniform(tf.shape(logits)[1:], seed=s,
                                                            alg="philox"),
                      seeds, fn_output_signature=tf.float32, parallel_iterations=16)
        return tf.argmax(logits - tf.math.log(-tf.math.log(u)), -1, output_type=tf.int32)

    def kernel_gumbel():
        u = kernels.uniform(tf.shape(logits), kernels.seed_key(seeds))
        return tf.argmax(logits - tf.math.log(-tf.math.log(u)), -1, output_type=tf.int32)

    cases = {
        "gelu [32,128,1024] fwd+bwd": (
            forward_backward(lambda x: keras.activations.gelu(x, approximate=False), hidden),
            forward_backward(kernels.gelu, hidden)),
        "dropout 0.1 [32,4,128,128] fwd+bwd": (
            forward_backward(lambda x: tf.nn.experimental.stateless_dropout(
                x, 0.1, seed=seed, rng_alg="philox"), probs),
            forward_backward(lambda x: kernels.dropout(x, 0.1, key), probs)),
        "gumbel-max sample [32,19,30522]": (
            forward(philox_gumbel), forward(kernel_gumbel)),
    }
    results = {}
    for name, (plain, kernel) in cases.items():
        plain_ms, kernel_ms = median_ms(plain, args.repeats), median_ms(kernel, args.repeats)
        results[name] = {"tensorflow_ops_ms": plain_ms, "electra_tf_kernel_ms": kernel_ms,
                         "speedup": plain_ms / kernel_ms}
        print(f"{name:38s} TF ops {plain_ms:7.1f} ms   kernel {kernel_ms:7.1f} ms   "
              f"{plain_ms / kernel_ms:.2f}x")
    record = {"command": "python benchmarks/training_kernels.py " + " ".join(argv or sys.argv[1:]),
              "device": f"CPU ({os.cpu_count()} cores, {platform.machine()})",
              "tensorflow": tf.__version__, "repeats": args.repeats,
              "load_average_1min_at_end": os.getloadavg()[0], "results": results}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
