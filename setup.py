"""electra_tf: ELECTRA pre-training, fine-tuning and serving in TensorFlow 2 / Keras 3."""

from setuptools import setup

# The TF family is pinned together: tensorflow-text must match TensorFlow's minor version
# exactly, and tensorflow-serving-api 2.21 already requires TensorFlow 2.21.
TF_FAMILY = "2.20.*"

setup(
    name="electra-tf",
    version="0.1.0",
    description="ELECTRA pre-training (replaced-token detection) for TensorFlow 2 and Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Listed, not found: a new subpackage is a decision (tests/test_package.py checks the list,
    # tools/check_install.sh installs it).
    packages=["electra_tf", "electra_tf.finetuning", "electra_tf.interop", "electra_tf.models",
              "electra_tf.objective", "electra_tf.serving", "electra_tf.training", "pipelines"],
    package_data={
        "electra_tf": [
            "configs/*.yaml",
            "configs/finetuning/*.yaml",
            "resources/serving/*.json",
            "resources/PROVENANCE.md",
            "resources/vocab/*.txt",
            "resources/corpus/*.gz",
            "resources/corpus/*.tsv",
        ],
    },
    install_requires=[
        f"tensorflow=={TF_FAMILY}",
        f"tensorflow-text=={TF_FAMILY}",
        f"tensorboard=={TF_FAMILY}",
        "keras>=3.10,<4",
        "keras-hub>=0.21",
        "apache-beam>=2.60",
        "google-crc32c>=1.5",  # Beam's TFRecord sink needs a CRC32C implementation on workers
        "tensorflow-datasets>=4.9",
        "pyyaml>=6",
        # Exports write TF Serving warm-up requests with its protos; pinned with the TF family.
        f"tensorflow-serving-api=={TF_FAMILY}",
        "numpy",
        # python -m electra_tf.convert reads and writes Hugging Face weights (no torch).
        "safetensors>=0.4",
    ],
    extras_require={
        # matplotlib draws the validation and ablation plots (benchmarks/).
        "test": ["pytest>=8", "matplotlib>=3.7"],
        "serving": [f"tensorflow-serving-api=={TF_FAMILY}"],
        # Only for side-by-side comparisons in benchmarks/; built on tf_keras (Keras 2) and
        # never imported by the library.
        "peers": ["tf-models-official"],
    },
    entry_points={
        "console_scripts": [
            "electra-pretrain=electra_tf.pretrain:main",
            "electra-finetune=electra_tf.finetune:main",
            "electra-export=electra_tf.export:main",
            "electra-predict=electra_tf.predict:main",
        ],
    },
)
