from setuptools import setup

setup(name="cs-config-tiny", version="1.0", packages=["cs_config"], install_requires=["tiny-core"])
