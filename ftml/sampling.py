"""Batch order and random state that a resumed run reproduces exactly, in every epoch.

Two things made a run resumed after its first epoch train differently from an uninterrupted one:

- transformers' LengthGroupedSampler (train_sampling_strategy "group_by_length") gets no generator
  from the Trainer, so each epoch's order is drawn from the global torch RNG as it stands when the
  epoch begins. A run resumed in epoch 2 draws it from the state after loading the model, not the
  one after epoch 1, and trains on other batches.
- The Trainer saves a checkpoint's RNG state at the end of its step, then runs the epoch-end
  evaluation, whose DataLoader draws a worker seed from the global torch RNG. An uninterrupted run
  enters the next epoch with that draw taken, a run resumed from the checkpoint without it: every
  later dropout mask differs.

EpochSeededSampler makes each epoch's order a pure function of (seed, epoch), as accelerate's
SeedableRandomSampler already does for random order (same rule, seed + epoch, so random order is
unchanged); ExactResumeSFTTrainer uses it for both strategies and evaluates on a forked RNG.

Data-parallel runs (accelerate launch): every process builds the same sampler (same seed, same
epoch), and accelerate's BatchSamplerShard hands process p the per-device batches p, p + N, p + 2N,
... of that one order. The N per-device batches of one micro-step are therefore consecutive in it:
together they are the batch a single process with N times the per-device batch would take.
A third thing broke a data-parallel resume in mid-epoch: the Trainer skips the trained batches by
wrapping the BatchSamplerShard in accelerate's SkipBatchSampler, through which neither accelerate
nor the Trainer reaches the sampler's set_epoch, so the rest of that epoch came in epoch 0's order.
ExactResumeSFTTrainer sets the epoch on its sampler itself before every epoch.
"""
import torch
from torch.utils.data import RandomSampler, Sampler
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from trl import SFTTrainer


class EpochSeededSampler(Sampler[int]):
    """Example indexes of one epoch, a pure function of (seed, epoch) and the data.

    Without ``lengths``: a random permutation (torch.randperm). With ``lengths`` (tokens per
    example): transformers' length grouping (get_length_grouped_indices: shuffle, then sort by
    length within mega-batches of ``batch_size`` multiples) on the same generator. The Trainer (and
    accelerate's DataLoaderShard, through a skipping batch sampler on resume) calls ``set_epoch``
    before each epoch; the generator is seeded with ``seed + epoch`` there, never carried over, so
    an epoch started mid-way after a resume yields the same order as in an uninterrupted run.
    """

    def __init__(self, size: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1):
        if lengths is not None and len(lengths) != size:
            raise ValueError(f"{len(lengths)} lengths for {size} examples")
        self.size, self.seed, self.lengths, self.batch_size = size, seed, lengths, batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.lengths is None:
            return iter(torch.randperm(self.size, generator=generator).tolist())
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class ExactResumeSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer whose train order per epoch depends only on (data_seed, epoch), and whose
    evaluations leave the torch RNG as they found it (evaluation is read-only; its draws must not
    shift the dropout masks of the steps after it, which a resumed run could not replay)."""

    epoch_sampler: EpochSeededSampler | None = None

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        if isinstance(sampler, LengthGroupedSampler):
            # Grouped by the global batch (the Trainer's is per device): the order a single process would use,
            # which accelerate then deals out to the data-parallel processes a per-device batch at a time.
            self.epoch_sampler = EpochSeededSampler(len(sampler.lengths), seed, list(sampler.lengths),
                                                    sampler.batch_size * self.args.world_size)
        elif isinstance(sampler, RandomSampler):
            self.epoch_sampler = EpochSeededSampler(len(sampler.data_source), seed)
        else:
            return sampler  # sequential or batch-rebalanced order: no randomness to pin
        return self.epoch_sampler

    def _run_epoch(self, *args, epoch, **kwargs):
        if self.epoch_sampler is not None:  # also when the Trainer's own set_epoch cannot reach it (module docstring)
            self.epoch_sampler.set_epoch(epoch)
        return super()._run_epoch(*args, epoch=epoch, **kwargs)

    def evaluate(self, *args, **kwargs):
        with torch.random.fork_rng():
            return super().evaluate(*args, **kwargs)
