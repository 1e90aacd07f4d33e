"""benchmarks/rnn.py's configuration specs: `config.NAME=value` names an rg.config setting (the
whole process's), kept apart from Session options and applied when a case is built."""
import pytest

import rnngraph as rg


def test_a_config_setting_is_parsed_apart_from_session_options(bench):
    options = bench.parse_spec("passes.fuse=0,config.cpu_helper_thread=on")
    assert options == {"passes": {"fuse": False},
                       bench.SETTINGS: {"cpu_helper_thread": True}}


@pytest.mark.parametrize("spec,message", [
    ("config.no_such_setting=1", "no rg.config.no_such_setting"),
    ("config._FIELDS=1", "no rg.config._FIELDS"),
    ("config.cpu_helper_thread=1,config.cpu_helper_thread=0", "given twice"),
    ("config.cpu_helper_thread=maybe", "expected 0/1"),
    ("colour=blue", "config.NAME"),
])
def test_bad_settings_are_refused_by_name(bench, spec, message):
    with pytest.raises(bench.SpecError, match=message):
        bench.parse_spec(spec)


def test_building_a_case_applies_the_setting(bench):
    before = rg.config.cpu_helper_thread
    try:
        bench.build_case("basic", "S4", bench.parse_spec("config.cpu_helper_thread=1"))
        assert rg.config.cpu_helper_thread is True
        bench.build_case("basic", "S4", bench.parse_spec("config.cpu_helper_thread=0"))
        assert rg.config.cpu_helper_thread is False
    finally:
        rg.config.cpu_helper_thread = before
