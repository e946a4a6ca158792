package com.mnv3compile;

/** An error of the mnv3 runtime (missing or corrupt bundle, wrong input size, ...). */
public class Mnv3Exception extends RuntimeException {
  public Mnv3Exception(String message) {
    super(message);
  }
}
