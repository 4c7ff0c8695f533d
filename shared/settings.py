"""Configuration from the environment. Infrastructure shared by all services has the prefixes
BACKBONE_KAFKA_ and BACKBONE_MONGO_; each service has its own prefix (MEMBERSHIP_, EVENTS_, ...)."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKBONE_KAFKA_")

    bootstrap_servers: str = "localhost:9092"
    # Idempotent producers need InitProducerId, which the local Tansu broker lacks: the local
    # stack turns this off; genuine Kafka keeps it on.
    enable_idempotence: bool = True
    # Prefixed to every topic and consumer group, so several environments (or test runs) can
    # share one cluster without seeing each other's messages.
    namespace: str = ""
    replication_factor: int = 1
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    request_timeout_ms: int = 30_000
    # Genuine Kafka authenticates each service as its own SCRAM user (docker-compose.yml, deploy/);
    # the local stack speaks PLAINTEXT.
    security_protocol: str = "PLAINTEXT"  # or SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None  # SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def topic(self, name: str) -> str:
        return self.namespace + name

    def group(self, service: str) -> str:
        return self.namespace + "backbone-" + service


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BACKBONE_MONGO_")

    uri: SecretStr = SecretStr("mongodb://localhost:27017/")  # may carry credentials
    # The local SecantusDB slows down badly with retryable writes; real MongoDB wants them on.
    retry_writes: bool = True
    database_prefix: str = "backbone_"
    server_selection_timeout_ms: int = 5_000


class ServiceSettings(BaseSettings):
    """Settings every service has; a service subclasses this with its own env prefix."""

    host: str = "127.0.0.1"
    port: int
    log_level: str = "INFO"
    # How long SIGTERM waits for in-flight requests; then as long again for messages, workers and
    # clients to stop (shared.shutdown): a step past that deadline is left behind.
    shutdown_grace_seconds: float = 10.0
    # Largest request body read at all (413 beyond it, before anything is parsed); routes that
    # take files or batches set their own larger limit.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
