"""Every built-in plugin passes the same contracts a third-party plugin inherits."""

import pytest
from torch import nn

import genvae
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



class TupleShapeEncoder(genvae.Encoder):
    """Written as docs/plugins.md says: every constructor argument, as received (``data_shape``
    is a tuple), passed to ``super().__init__``."""

    def __init__(self, data_shape=(2,), num_classes=0, z_dim=2, widths=(3, 4)):
        super().__init__(data_shape=data_shape, num_classes=num_classes, z_dim=z_dim, widths={"hidden": widths})
        self.latent_groups = {"z": z_dim}
        self.net = nn.Linear(data_shape[0], 2 * z_dim)

    def forward(self, x, y=None):
        return self.net(x).chunk(2, dim=1)


class TupleShapeDecoder(genvae.Decoder):
    def __init__(self, data_shape=(2,), num_classes=0, z_dim=2, widths=(3, 4)):
        super().__init__(data_shape=data_shape, num_classes=num_classes, z_dim=z_dim, widths={"hidden": widths})
        self.net = nn.Linear(z_dim, data_shape[0])

    def forward(self, z, y=None):
        return self.net(z)


class TupleShapePlugin:
    @staticmethod
    @genvae.hookimpl
    def genvae_register_architectures(register):
        register("tuple-linear", genvae.Architecture(TupleShapeEncoder, TupleShapeDecoder))


class TestTupleShapeArchitectureContract(ArchitectureContract):
    """Tuples given to Component.__init__ are stored as lists: the config/export check passes."""

    arch_name = "tuple-linear"

    @pytest.fixture(autouse=True)
    def _plugin(self, genvae_plugins):
        genvae_plugins(TupleShapePlugin)

    def test_tuples_are_stored_as_lists(self):
        encoder, _ = self.build()
        assert encoder.config == {"data_shape": [2], "num_classes": 0, "z_dim": 2, "widths": {"hidden": [3, 4]}}


def test_a_contract_test_class_without_the_plugin_name_says_which_attribute_to_set():
    from genvae.testing import ArchitectureContract, ObjectiveContract

    with pytest.raises(TypeError, match='TestMine: set the class attribute arch_name = "..." to the name your plugin registers'):

        class TestMine(ArchitectureContract):
            architecture_name = "tiny"  # the wrong attribute

    class HelperBase(ObjectiveContract):  # not a test class: may leave the name to its subclasses
        pass
