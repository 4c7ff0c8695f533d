"""Tests against real local servers (Tansu for Kafka, SecantusDB for MongoDB), started by tests/conftest.py."""
