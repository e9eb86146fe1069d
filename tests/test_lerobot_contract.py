"""What lerobot 0.6.1's own tests expect of a policy type, asked of `smolvla_rmt` where stock SmolVLA passes.

lerobot's test files are not in its package; these follow, at tag v0.6.1,
`tests/policies/test_policies.py` (class lookup, defaults, save/load, multi-key construction,
training and inference), `tests/processor/test_smolvla_processor.py` and
`tests/policies/smolvla/test_smolvla_rtc.py` (marked CUDA-only there; the bodies run on the CPU).
The only departure: the tiny local backbone instead of SmolVLM2 from the Hub.
"""

import inspect
from copy import deepcopy

import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class, make_policy_config, make_pre_post_processors
from lerobot.utils.constants import ACTION, OBS_STATE
from policy_helpers import config_kwargs, make_policy, noise_for, obs_batch

from memlens.models import tiny_smolvla_kwargs

TYPE = "smolvla_rmt"


def test_get_policy_and_config_classes():
    policy_cls = get_policy_class(TYPE)
    policy_cfg = make_policy_config(TYPE, **tiny_smolvla_kwargs())
    assert policy_cls.name == TYPE
    assert issubclass(policy_cfg.__class__, inspect.signature(policy_cls.__init__).parameters["config"].annotation)


def _dataset_features(cue_dataset):
    from lerobot.utils.feature_utils import dataset_to_policy_features

    from memlens.runtime.replay import open_dataset

    features = dataset_to_policy_features(open_dataset(cue_dataset).meta.features)
    output = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    inputs = {k: f for k, f in features.items() if k not in output and k.startswith("observation.")}
    return inputs, output


@pytest.mark.parametrize("num_mem_tokens", [0, 4])
def test_policy_defaults_and_save_load_pretrained(cue_dataset, tmp_path, num_mem_tokens):
    policy_cls = get_policy_class(TYPE)
    cfg = make_policy_config(TYPE, **tiny_smolvla_kwargs(), num_mem_tokens=num_mem_tokens)
    cfg.input_features, cfg.output_features = _dataset_features(cue_dataset)
    policy = policy_cls(cfg)
    policy.save_pretrained(tmp_path / "saved")
    loaded = policy_cls.from_pretrained(tmp_path / "saved", config=cfg)
    torch.testing.assert_close(list(policy.parameters()), list(loaded.parameters()), rtol=0, atol=0)


@pytest.mark.parametrize("multikey", [True, False])
def test_multikey_construction(multikey):
    from memlens.policy import SmolVLARMTConfig

    inputs = {"observation.images.top": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 64, 64)),
              OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(10,))}
    outputs = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(5,))}
    if multikey:
        inputs |= {f"{OBS_STATE}.subset{i}": PolicyFeature(type=FeatureType.STATE, shape=(5,)) for i in (1, 2)}
        outputs |= {"action.first_three_motors": PolicyFeature(type=FeatureType.ACTION, shape=(3,)),
                    "action.last_two_motors": PolicyFeature(type=FeatureType.ACTION, shape=(2,))}
    config = SmolVLARMTConfig(**tiny_smolvla_kwargs(), num_mem_tokens=4, input_features=inputs, output_features=outputs)
    assert config.robot_state_feature == inputs[OBS_STATE]
    assert config.action_feature == outputs[ACTION]


@pytest.mark.parametrize("n_mem_segments", [1, 3])
def test_policy_trains_through_its_preprocessor_and_acts_without_mutating_its_inputs(cue_dataset, n_mem_segments):
    """lerobot's `test_policy` body, fed through the policy's own preprocessor (K=1 crashed here on video)."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.datasets import make_dataset
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies.factory import make_policy

    from memlens.tasks.envs import make_env_config

    env_cfg = make_env_config("memlens_cue_recall", variant="short")
    train_cfg = TrainPipelineConfig(
        dataset=DatasetConfig(repo_id="local/cue_short", root=str(cue_dataset), episodes=[0], video_backend="pyav"),
        policy=make_policy_config(TYPE, push_to_hub=False, device="cpu", **tiny_smolvla_kwargs(), num_mem_tokens=4,
                                  n_mem_segments=n_mem_segments),
        env=env_cfg,
    )
    train_cfg.validate()
    dataset = make_dataset(train_cfg)
    policy = make_policy(train_cfg.policy, ds_meta=dataset.meta)
    preprocessor, postprocessor = make_pre_post_processors(train_cfg.policy, None, dataset_stats=dataset.meta.stats)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=True, drop_last=True, num_workers=0)
    batch = preprocessor(next(iter(loader)))
    before = deepcopy(batch)
    policy.train()
    loss, info = policy.forward(batch)
    loss.backward()
    assert torch.isfinite(loss) and info["n_valid_segments"] > 0
    assert batch.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(batch[key], value) if isinstance(value, torch.Tensor) else batch[key] == value

    envs = make_env(train_cfg.env, n_envs=2)
    env = next(iter(next(iter(envs.values())).values()))
    env_pre, env_post = make_env_pre_post_processors(env_cfg, train_cfg.policy)
    policy.reset()
    observation, _ = env.reset(seed=train_cfg.seed)
    observation = preprocess_observation(observation)
    observation["task"] = list(env.call("task_description"))  # what lerobot-eval's rollout does
    observation = preprocessor(env_pre(observation))
    frozen = deepcopy(observation)
    policy.eval()
    with torch.inference_mode():
        action = postprocessor(policy.select_action(observation))
    for key, value in frozen.items():
        assert torch.equal(observation[key], value) if isinstance(value, torch.Tensor) else observation[key] == value
    env.step(action.cpu().numpy())
    env.close()
    assert policy.memory.frame == 1 and policy.memory.last_write is not None


def test_the_processors_are_smolvlas():
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
    from lerobot.processor import (
        AddBatchDimensionProcessorStep,
        DeviceProcessorStep,
        NewLineTaskProcessorStep,
        NormalizerProcessorStep,
        RenameObservationsProcessorStep,
        UnnormalizerProcessorStep,
    )

    from memlens.policy import SmolVLARMTConfig
    from memlens.policy.processor_smolvla_rmt import make_smolvla_rmt_pre_post_processors

    cfg = SmolVLARMTConfig(**config_kwargs(num_mem_tokens=4))
    pre, post = make_pre_post_processors(cfg, None)  # resolved by convention: processor_smolvla_rmt
    ref_pre, ref_post = make_smolvla_pre_post_processors(cfg)
    assert (pre.name, post.name) == ("policy_preprocessor", "policy_postprocessor")
    assert [type(s) for s in pre.steps] == [type(s) for s in ref_pre.steps]
    assert [type(s) for s in post.steps] == [type(s) for s in ref_post.steps]
    kinds = [type(s) for s in pre.steps]
    assert kinds[:3] == [RenameObservationsProcessorStep, AddBatchDimensionProcessorStep, NewLineTaskProcessorStep]
    assert kinds[4:] == [DeviceProcessorStep, NormalizerProcessorStep]
    assert [type(s) for s in post.steps] == [UnnormalizerProcessorStep, DeviceProcessorStep]
    assert make_smolvla_rmt_pre_post_processors is not None
    batch = pre({"observation.images.top": torch.rand(3, 64, 64), OBS_STATE: torch.randn(4), "task": "reach the cue"})
    assert batch["observation.language.tokens"].shape[0] == 1  # the task was tokenized (with its newline)


def _rtc_policy(num_mem_tokens):
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    return make_policy(num_mem_tokens=num_mem_tokens, chunk_size=10, n_action_steps=10,
                       rtc_config=RTCConfig(enabled=True, execution_horizon=5, max_guidance_weight=5.0))


@pytest.mark.parametrize("num_mem_tokens", [0, 4])
def test_smolvla_rtc_initialization(num_mem_tokens):
    policy = _rtc_policy(num_mem_tokens)
    assert policy.rtc_processor is not None and policy.rtc_processor.rtc_config.enabled is True
    plain = make_policy(num_mem_tokens=num_mem_tokens)
    assert plain.rtc_processor is None and plain.model.rtc_processor is None and plain._rtc_enabled() is False


@pytest.mark.parametrize("num_mem_tokens", [0, 4])
@pytest.mark.parametrize("with_prev_chunk", [True, False])
def test_smolvla_rtc_inference(num_mem_tokens, with_prev_chunk):
    policy = _rtc_policy(num_mem_tokens).eval()
    obs, noise = obs_batch(batch_size=1), noise_for(_rtc_policy(num_mem_tokens), batch_size=1)
    prev = torch.randn(1, 6, policy.config.max_action_dim, generator=torch.Generator().manual_seed(5))
    with_rtc = policy.predict_action_chunk(dict(obs), noise=noise.clone(),
                                           prev_chunk_left_over=prev if with_prev_chunk else None,
                                           inference_delay=2, execution_horizon=5)
    policy.config.rtc_config.enabled = False
    without = policy.predict_action_chunk(dict(obs), noise=noise.clone())
    policy.config.rtc_config.enabled = True
    assert with_rtc.shape == without.shape == (1, 10, 2)
    if with_prev_chunk:
        assert not torch.allclose(with_rtc, without, rtol=1e-3)
    else:  # without a previous chunk RTC changes nothing, and the two calls read the same memory
        assert torch.allclose(with_rtc, without, rtol=1e-5)
