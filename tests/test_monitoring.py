"""HealthMonitor: warns once when the discriminator sits at the baseline or representations
collapse after warm-up, and once when it clears."""

from electra_tf.training.monitoring import HealthMonitor

HEALTHY = {"discriminator_auc": 0.9, "representation_cosine": 0.4}


def test_warns_once_per_condition_and_says_when_it_clears():
    monitor = HealthMonitor(warmup_steps=100)
    stuck = {"discriminator_auc": 0.52, "representation_cosine": 0.97}
    assert monitor.check(50, stuck) == []  # warm-up: no verdict yet
    lines = monitor.check(100, stuck)
    assert len(lines) == 2
    assert "baseline at step 100" in lines[0] and "AUC 0.520" in lines[0]
    assert "collapsing at step 100" in lines[1] and "0.970" in lines[1]
    assert monitor.check(150, stuck) == []  # still stuck: said already
    lines = monitor.check(200, {"discriminator_auc": 0.75, "representation_cosine": 0.97})
    assert lines == ["the discriminator left the baseline at step 200: AUC 0.750"]
    assert monitor.check(250, HEALTHY) == [
        "token representations recovered at step 250: mean cosine 0.400"]
    assert monitor.check(300, HEALTHY) == []


def test_mlm_runs_have_no_auc_and_healthy_runs_print_nothing():
    monitor = HealthMonitor(warmup_steps=0)
    assert monitor.check(10, {"representation_cosine": 0.3}) == []
    assert monitor.check(20, HEALTHY) == []
    assert len(monitor.check(30, {"representation_cosine": 0.95})) == 1
