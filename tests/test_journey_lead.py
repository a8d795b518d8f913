"""What a newcomer following the README with their own data met (the lead's share; tests/test_journey.py holds
the rest): the step log printed a learning rate of 2e-5 as 0.0."""

import logging

from test_engine import ToyModel, collate, make_args, toy_dataset

from minibert.engine import Trainer


def test_the_step_log_shows_a_small_learning_rate(tmp_path, caplog):
    """round(v, 4) printed `'learning_rate': 0.0` for the learning rates fine-tuning uses (2e-5)."""
    args = make_args(tmp_path, learning_rate=2e-5, max_steps=4, logging_steps=4, lr_scheduler_type="constant",
                     warmup_steps=0)
    with caplog.at_level(logging.INFO, logger="minibert"):
        Trainer(ToyModel(), args, toy_dataset(), collate).train()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step 4:"))
    assert "'learning_rate': 2e-05" in line


def test_whitenings_k_bound_is_one_the_vectors_can_take():
    """With repeated sentences the first error said "pass k<=47" and k=47 was then refused ("vary in only 38")."""
    import numpy as np
    import pytest

    from minibert.sentence_embeddings import Whitening

    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(39, 64))
    vectors = np.concatenate([distinct, distinct[:9]])  # 48 sentences, 39 distinct: centred, they span 38
    with pytest.raises(ValueError, match=r"spread along at most 47 directions \(these along 38: some repeat\).* "
                                         r"pass k<=38"):
        Whitening(k=60).fit(vectors)
    assert Whitening(k=38).fit(vectors).transform(vectors).shape == (48, 38)
