"""HealthMonitor: warns once when the discriminator sits at the baseline or representations
collapse (twice in a row, after twice the warm-up), and once when it clears."""

from electra_tf.training.monitoring import HealthMonitor

HEALTHY = {"discriminator_auc": 0.9, "representation_cosine": 0.4}
STUCK = {"discriminator_auc": 0.52, "representation_cosine": 0.97}


def test_warns_once_per_condition_and_says_when_it_clears():
    monitor = HealthMonitor(warmup_steps=50)
    assert monitor.check(50, STUCK) == []  # before 2 × warm-up: no verdict yet
    assert monitor.check(100, STUCK) == []  # once is not yet a state
    lines = monitor.check(150, STUCK)
    assert len(lines) == 2
    assert "baseline at step 150" in lines[0] and "AUC 0.520" in lines[0]
    assert "collapsing at step 150" in lines[1] and "0.970" in lines[1]
    assert monitor.check(200, STUCK) == []  # still stuck: said already
    lines = monitor.check(250, {"discriminator_auc": 0.75, "representation_cosine": 0.97})
    assert lines == ["the discriminator left the baseline at step 250: AUC 0.750"]
    assert monitor.check(300, HEALTHY) == [
        "token representations recovered at step 300: mean cosine 0.400"]
    assert monitor.check(350, HEALTHY) == []


def test_a_passing_dip_and_healthy_or_mlm_runs_print_nothing():
    monitor = HealthMonitor(warmup_steps=0)
    # An MLM run (no AUC) passes through a high cosine once, then recovers: no warning.
    assert monitor.check(10, {"representation_cosine": 0.91}) == []
    assert monitor.check(20, {"representation_cosine": 0.3}) == []
    assert monitor.check(30, HEALTHY) == []
    assert monitor.check(40, {"representation_cosine": 0.95}) == []
    assert len(monitor.check(50, {"representation_cosine": 0.95})) == 1
