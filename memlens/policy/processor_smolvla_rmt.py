"""Pre/post-processing for `smolvla_rmt`: exactly SmolVLA's pipelines (memory needs none of its own).

lerobot resolves `make_<type>_pre_post_processors` in the sibling `processor_*` module by convention.
"""

from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

from .configuration_smolvla_rmt import SmolVLARMTConfig


def make_smolvla_rmt_pre_post_processors(config: SmolVLARMTConfig, dataset_stats=None):
    return make_smolvla_pre_post_processors(config, dataset_stats=dataset_stats)
