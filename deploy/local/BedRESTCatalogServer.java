/*
 * Test bed launcher for Apache Iceberg's REST catalog test fixture (deploy/local/rest.sh).
 *
 * org.apache.iceberg.rest.RESTCatalogServer binds Jetty to every address (new Server(port)) and
 * has no host setting. This does what its start() does, with the connector bound to the
 * loopback address only (LAKESINK_REST_HOST, default 127.0.0.1). It lives in the fixture's
 * package to reach its package-private classes; the backend catalog is built by the fixture's
 * own (private) initializeBackendCatalog(), so the CATALOG_* environment works as documented.
 *
 * Compiled by rest.sh against the pinned Iceberg version (javac, or ECJ on a JRE).
 */
package org.apache.iceberg.rest;

import java.lang.reflect.Method;
import org.apache.iceberg.util.PropertyUtil;
import org.eclipse.jetty.compression.gzip.GzipCompression;
import org.eclipse.jetty.compression.server.CompressionHandler;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public final class BedRESTCatalogServer {
  private BedRESTCatalogServer() {}

  public static void main(String[] args) throws Exception {
    String host = System.getenv().getOrDefault("LAKESINK_REST_HOST", "127.0.0.1");
    RESTCatalogServer fixture = new RESTCatalogServer();
    Method init = RESTCatalogServer.class.getDeclaredMethod("initializeBackendCatalog");
    init.setAccessible(true);
    RESTCatalogServer.CatalogContext ctx = (RESTCatalogServer.CatalogContext) init.invoke(fixture);

    RESTCatalogServlet servlet = new RESTCatalogServlet(new RESTServerCatalogAdapter(ctx));
    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(servlet), "/*");
    CompressionHandler compression = new CompressionHandler();
    compression.putCompression(new GzipCompression());
    context.insertHandler(compression);

    int port = PropertyUtil.propertyAsInt(ctx.configuration(), RESTCatalogServer.REST_PORT, 8181);
    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    System.err.println("BedRESTCatalogServer: listening on " + host + ":" + port);
    server.join();
  }
}
