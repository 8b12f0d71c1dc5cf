"""Every built-in plugin passes the same contracts a third-party plugin inherits."""

from genvae.testing import ArchitectureContract, DatasetContract, MetricContract, ObjectiveContract


class TestVAEContract(ObjectiveContract):
    objective_name = "vae"


class TestIntroContract(ObjectiveContract):
    objective_name = "intro"


class TestSoftIntroContract(ObjectiveContract):
    objective_name = "soft-intro"
    objective_options = {"num_vae": 0}


class TestMLPContract(ArchitectureContract):
    arch_name = "mlp"
    arch_options = {"hidden": 16}
    num_classes = 3


class TestEightGaussiansContract(DatasetContract):
    dataset_name = "8gaussians"


class TestSpiralsContract(DatasetContract):
    dataset_name = "2spirals"


class TestCheckerboardContract(DatasetContract):
    dataset_name = "checkerboard"


class TestRingsContract(DatasetContract):
    dataset_name = "rings"


class TestTwentyFiveGaussiansContract(DatasetContract):
    dataset_name = "25gaussians"


class TestToy2DMetricContract(MetricContract):
    metric_name = "toy2d"
