"""Test kit for plugin authors: contract classes to subclass, and a pytest plugin with fixtures."""

from genvae.testing.contracts import ArchitectureContract, DatasetContract, MetricContract, ObjectiveContract

__all__ = ["ArchitectureContract", "DatasetContract", "MetricContract", "ObjectiveContract"]
