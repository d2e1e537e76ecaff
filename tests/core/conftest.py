import pytest


@pytest.fixture
def forge_cli(forge_cli):
    """Core tests run with the test plugin ``forge-testkit`` (tests/fixture_plugins/forge_testkit.py) and see only the
    plugins of the temporary site: the dev environment also has forge's own plugins installed."""
    forge_cli.site.add("forge-testkit", "forge_testkit", entry_point="testkit")
    forge_cli.only_site = True
    return forge_cli
