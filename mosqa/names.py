"""The names each registry offers, free of torch so that `mosqa train-qa --help` stays instant.

The registries themselves live beside their code (models.MODELS, train.OPTIMIZERS ...); a test
checks that every tuple here lists exactly its registry's keys, in the same order.
"""

QA_ARCHS = ("qualitynet", "hasa", "mosnet", "cnn", "cnnA", "can2d", "lstmcan", "crn", "nisqa")
QA_LOSSES = ("mse", "norm-mse", "frame-mse", "frame-mse-norm", "ce", "edm", "frame-edm")
QA_OPTIMIZERS = ("adam", "adamw", "rmsprop")
QA_SCHEDULERS = ("none", "cosine", "plateau")
QA_METRICS = ("lcc", "srcc", "mse")

SE_ARCHS = ("lstm", "dpcrn")
SE_LOSSES = ("mag", "complex", "sisnr", "iam")
SE_SCHEDULERS = ("none", "cosine")
SE_METRICS = ("pesq", "stoi", "si_snr", "sig", "bak", "ovrl")
QA_MODES = ("none", "frozen", "grl", "joint", "learn")


def choices(names) -> str:
    return " | ".join(names)
