"""Package metadata for pacifica-notifications."""
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent


def requirements(name):
    """Read one requirement per line, skipping blanks and comments."""
    lines = (HERE / name).read_text(encoding='utf-8').splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


setup(
    name='pacifica-notifications',
    version='1.0.0',
    description='Route Pacifica data-availability CloudEvents to subscribers, by policy.',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_namespace_packages(include=['pacifica.*']),
    install_requires=requirements('requirements.txt'),
    extras_require={
        'postgres': ['psycopg2-binary>=2.9'],
        'mysql': ['PyMySQL>=1.1'],
        'redis': ['redis>=4.5'],
        'test': requirements('requirements-test.txt'),
    },
    entry_points={
        'console_scripts': [
            'pacifica-notifications=pacifica.notifications.__main__:server_main',
            'pacifica-notifications-cmd=pacifica.notifications.__main__:cmd_main',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Framework :: CherryPy',
    ],
)
