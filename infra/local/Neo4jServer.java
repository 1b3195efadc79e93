import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;

/**
 * Neo4j Community, embedded, serving Bolt: what modeldb.infra.launcher runs instead of a
 * Neo4j distribution, so that every jar comes from Maven Central.
 *
 * <p>Usage: {@code java -cp <jars>:<this class> Neo4jServer <home dir> <neo4j.conf>}. The
 * launcher writes neo4j.conf (Bolt address, auth off, memory); this class only loads it, so
 * all settings live in one place on the Python side. Runs until SIGTERM/SIGINT, then shuts
 * the databases down cleanly (checkpoint, close the store) before the JVM exits.
 */
public final class Neo4jServer {
    private Neo4jServer() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 2) {
            System.err.println("usage: Neo4jServer <home dir> <neo4j.conf>");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path conf = Path.of(args[1]).toAbsolutePath();

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .loadPropertiesFromFile(conf)
                // Without a user log provider embedded Neo4j prints nothing to stdout, and the
                // launcher's log file (stdout) is what it shows when a start fails.
                .setUserLogProvider(new Log4jLogProvider(System.out, Level.INFO))
                .build();

        // The JVM runs shutdown hooks on SIGTERM; main waits here until the hook is done, so
        // the process only exits after the store has been closed.
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("Neo4jServer: shutting down");
            dbms.shutdown();
            System.out.println("Neo4jServer: stopped");
            System.out.flush();
            stopped.countDown();
        }, "neo4j-shutdown"));

        // Touching the default database makes build() failures surface here, not on first query.
        dbms.database("neo4j").executeTransactionally("RETURN 1");
        System.out.println("Neo4jServer: ready, databases " + dbms.listDatabases());
        System.out.flush();
        stopped.await();
    }
}
